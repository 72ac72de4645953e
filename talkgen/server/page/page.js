// The conversation page: ask by typing or speaking, watch the reply stream in and the avatar
// answer, replay earlier turns, and see every job with its duration, render time and cost.
import * as api from "./api.js";
import { button, dollars, element, seconds } from "./dom.js";
import { showJobs } from "./jobs.js";
import { playAnswer } from "./player.js";
import { microphone } from "./recorder.js";

const SESSION_KEY = "talkgen.session";
const PERSONA_KEY = "talkgen.persona";

const $ = (id) => document.getElementById(id);
const video = document.querySelector("video");
const askForm = $("ask-form");
const question = askForm.elements.question;
const persona = askForm.elements.persona;
const turnsList = $("turns");
const status = $("status");

const turns = new Map(); // job id -> turn
let current = null; // the turn the video shows
const waiting = []; // turns whose live stream began while another was playing

let ready = ""; // the status line once the server answered

function say(text) {
  status.textContent = text;
}

// ---- turns of the conversation

function addTurn(questionText) {
  const li = element("li", "turn");
  // Busy while the reply streams in: a screen reader reads the turn once, when it is complete.
  li.setAttribute("aria-busy", "true");
  const turn = {
    id: null,
    done: false,
    live: false,
    liveFailed: false,
    job: null,
    li,
    question: element("p", "question", questionText),
    reply: element("p", "reply"),
    meta: element("p", "meta", "Sending…"),
  };
  turn.play = button("Replay", () => show(turn));
  turn.play.hidden = true; // until the answer has a video
  turn.stop = button("Stop", () => cancel(turn));
  turn.stop.hidden = true; // while the job runs
  const actions = element("div", "row actions");
  actions.append(turn.play, turn.stop);
  li.append(turn.question, turn.reply, turn.meta, actions);
  turnsList.append(li);
  li.scrollIntoView({ block: "nearest" });
  return turn;
}

// The job's status is also the turn's data-status, for styles and tests.
function setStatus(turn, value) {
  turn.li.dataset.status = value;
  if (!turn.done) turn.meta.textContent = value;
}

function startTurn(turn, job) {
  turn.id = job.id;
  turns.set(job.id, turn);
  turn.stop.hidden = false;
  setStatus(turn, job.status || "queued");
  if (job.session) sessionStorage.setItem(SESSION_KEY, job.session);
  const stop = new AbortController();
  turn.abort = stop;
  api.followEvents(job.id, (name, data) => onEvent(turn, name, data), stop.signal);
  refreshJobs();
}

function finish(turn, job) {
  setStatus(turn, job.status);
  turn.li.setAttribute("aria-busy", "false");
  turn.done = true;
  turn.job = job;
  turn.stop.hidden = true;
  if (job.question) turn.question.textContent = job.question;
  if (job.reply) turn.reply.textContent = job.reply;
  if (job.status === "done") {
    turn.play.hidden = false;
    turn.meta.textContent = `${seconds(job.video_s)} of video · rendered in ${seconds(job.render_s)} · ${dollars(job.cost_usd)}`;
  } else {
    turn.meta.textContent = job.status === "failed" ? `Failed: ${job.error || "no reason given"}` : "Cancelled";
    turn.meta.classList.add("error");
  }
}

function onEvent(turn, name, data) {
  switch (name) {
    case "status":
      // A finished status waits for its own event (done, failed, cancelled), which carries the job.
      if (!turn.done && ["queued", "running"].includes(data.status)) setStatus(turn, data.status);
      break;
    case "text":
      turn.reply.textContent += data.text;
      break;
    case "stage":
      if (!turn.done) turn.meta.textContent = `running: ${data.name}`;
      break;
    case "segment":
      // The live playlist lists its first segment: the answer can be watched from its start.
      if (!turn.live) {
        turn.live = true;
        turn.play.hidden = false;
        autoplay(turn);
      }
      break;
    case "done":
      finish(turn, data.job);
      // No live stream was announced (a job re-run from its cache), or it could not be played.
      if (!turn.live || (turn.liveFailed && current === turn)) autoplay(turn);
      refreshJobs();
      break;
    case "failed":
      finish(turn, { status: "failed", error: data.error });
      refreshJobs();
      break;
    case "cancelled":
      finish(turn, { status: "cancelled" });
      refreshJobs();
      break;
  }
}

async function cancel(turn) {
  turn.stop.disabled = true;
  try {
    await api.cancelJob(turn.id);
  } catch (err) {
    handle(err);
  }
}

// ---- the avatar's video

// Answers play in the order they were asked: one that starts while another is playing waits.
function autoplay(turn) {
  const busy = current && current !== turn && !video.paused && !video.ended;
  if (busy) waiting.push(turn);
  else show(turn);
}

function show(turn) {
  current = turn;
  for (const t of turns.values()) t.li.classList.toggle("playing", t === turn);
  playJob(turn.id, turn.question.textContent, turn.job, () => {
    turn.liveFailed = true;
    // The job may have finished while the live playlist was still being retried: its "done"
    // came before this failure, so nothing else will start its video.
    if (current === turn && turn.job && turn.job.status === "done") show(turn);
  });
}

function playJob(id, label, job, onLiveFail = () => {}) {
  const nowPlaying = $("now-playing");
  nowPlaying.textContent = `Playing: ${label}`;
  playAnswer(video, id, job && job.status === "done", (why) => {
    onLiveFail();
    nowPlaying.textContent = `The live stream stopped (${why}); the video plays when the job is done.`;
  });
}

video.addEventListener("ended", () => {
  const next = waiting.shift();
  if (next) show(next);
});

// ---- asking

function fields() {
  return {
    persona: persona.value.trim() || null,
    session: sessionStorage.getItem(SESSION_KEY),
  };
}

async function ask(text) {
  const turn = addTurn(text);
  try {
    startTurn(turn, await api.askText({ script: text, ...fields() }));
  } catch (err) {
    finish(turn, { status: "failed", error: err.message });
    handle(err);
  }
}

async function askSpoken(audio) {
  const turn = addTurn("(a spoken question)");
  try {
    startTurn(turn, await api.askAudio(audio, fields()));
    say(ready);
  } catch (err) {
    finish(turn, { status: "failed", error: err.message });
    handle(err);
  }
}

askForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = question.value.trim();
  if (!text) return;
  question.value = "";
  ask(text);
});

question.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    askForm.requestSubmit();
  }
});

persona.addEventListener("change", () => sessionStorage.setItem(PERSONA_KEY, persona.value));

microphone($("speak"), askSpoken, say);

// ---- the jobs view

async function refreshJobs() {
  let jobs;
  try {
    jobs = await api.listJobs();
  } catch (err) {
    handle(err);
    return;
  }
  showJobs($("jobs"), jobs, (job) => {
    const turn = turns.get(job.id);
    if (turn) show(turn);
    else playJob(job.id, job.question || job.id, job);
  });
}

$("refresh-jobs").addEventListener("click", refreshJobs);

// ---- the conversation so far (after a reload) and a new one

async function restore(session) {
  if (!session) return;
  const jobs = (await api.listJobs()).filter((job) => job.session === session).reverse();
  for (const job of jobs) {
    if (turns.has(job.id)) continue;
    const turn = addTurn(job.question || "(a spoken question)");
    if (["done", "failed", "cancelled"].includes(job.status)) {
      turn.id = job.id;
      turns.set(job.id, turn);
      finish(turn, job);
    } else {
      startTurn(turn, job);
    }
  }
}

$("new-conversation").addEventListener("click", () => {
  sessionStorage.removeItem(SESSION_KEY);
  for (const turn of turns.values()) turn.abort?.abort();
  turns.clear();
  waiting.length = 0;
  turnsList.replaceChildren();
  question.focus();
});

// ---- start: the token if the server wants one, then wait for the models

function handle(err) {
  if (err instanceof api.ApiError && err.status === 401) {
    api.setToken("");
    $("token-form").hidden = false;
    $("token").focus();
    say("This server needs its access token.");
  } else {
    say(err.message);
  }
}

$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  api.setToken($("token").value.trim());
  $("token").value = "";
  $("token-form").hidden = true;
  start();
});

async function waitForModels() {
  for (;;) {
    try {
      return await api.health();
    } catch (err) {
      const loading = err instanceof api.ApiError && err.status === 503;
      if (loading || err instanceof TypeError) {
        // TypeError: no answer at all (the server is starting, or the tunnel is down).
        say(loading ? `${err.message} (asking now queues the question)` : "The server does not answer yet; retrying…");
        await new Promise((resolve) => setTimeout(resolve, 1000));
      } else {
        throw err;
      }
    }
  }
}

async function start() {
  try {
    const info = await waitForModels();
    persona.placeholder = info.persona ? `default: ${info.persona}` : "the server's default";
    ready = `Ready: recipe ${info.recipe}, ${info.workers} worker${info.workers === 1 ? "" : "s"}.`;
    say(ready);
    await restore(sessionStorage.getItem(SESSION_KEY));
    await refreshJobs();
  } catch (err) {
    handle(err);
  }
}

persona.value = sessionStorage.getItem(PERSONA_KEY) || "";
question.focus();
start();
