// The jobs view: every job on the server, newest first, with its duration, render time and cost.
import { button, dollars, element, seconds, when } from "./dom.js";

// Fills the table body; a finished job's Play button calls onPlay(job).
export function showJobs(tbody, jobs, onPlay) {
  const rows = jobs.map((job) => {
    const tr = element("tr");
    tr.dataset.status = job.status;
    const cells = [
      [when(job.created)],
      [job.question || "", "asked-text"],
      [job.status],
      [seconds(job.video_s), "num"],
      [seconds(job.render_s), "num"],
      [dollars(job.cost_usd), "num"],
    ];
    for (const [text, className] of cells) tr.append(element("td", className, text));
    const play = element("td");
    if (job.status === "done") play.append(button("Play", () => onPlay(job)));
    tr.append(play);
    return tr;
  });
  tbody.replaceChildren(...rows);
}
