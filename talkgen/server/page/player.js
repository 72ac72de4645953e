// The avatar's one <video>: a job's live HLS stream while it renders, or its finished MP4.
import { authHeaders, jobPath, mediaUrl } from "./api.js";

let hls = null;
const PLAYLIST_TRIES = 10;
const PLAYLIST_RETRY_MS = 500;

function detach(video) {
  if (hls) {
    hls.destroy();
    hls = null;
  }
  video.removeAttribute("src");
  video.load();
}

// Starts playback. Without a user gesture close enough in time, the browser may refuse sound:
// then the avatar plays muted, and the controls can unmute it.
function start(video) {
  video.play().catch((err) => {
    if (err.name !== "NotAllowedError") return; // AbortError: another source replaced this one
    video.muted = true;
    video.play().catch(() => {});
  });
}

// Plays the live playlist from its first segment (not from the live edge, where a player
// starts by default: the answer's beginning matters). hls.js over Media Source Extensions is
// preferred where it works, since it can send the token as a header on every request; native
// HLS (Safari, iOS) gets it in the query. onFail() is called if the stream cannot be played.
function playLive(video, path, onFail, tries = 0) {
  detach(video);
  const Hls = window.Hls;
  if (Hls && Hls.isSupported()) {
    hls = new Hls({
      startPosition: 0,
      xhrSetup(xhr) {
        for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
      },
    });
    const mine = hls;
    hls.on(Hls.Events.ERROR, (_event, data) => {
      if (!data.fatal || hls !== mine) return;
      if (data.details === Hls.ErrorDetails.MANIFEST_LOAD_ERROR && tries < PLAYLIST_TRIES) {
        // hls.js does not retry a 404, and the first chunk's event may come a moment before
        // the playlist lists that chunk.
        setTimeout(() => hls === mine && playLive(video, path, onFail, tries + 1), PLAYLIST_RETRY_MS);
        return;
      }
      detach(video);
      onFail(data.details);
    });
    hls.loadSource(path);
    hls.attachMedia(video);
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = mediaUrl(path);
    video.addEventListener("error", () => onFail("native HLS error"), { once: true });
  } else {
    onFail("this browser plays neither HLS nor Media Source Extensions");
    return;
  }
  start(video);
}

function playFile(video, path) {
  detach(video);
  video.src = mediaUrl(path);
  start(video);
}

// A job's answer: its MP4 with captions once it is finished, its live stream before.
export function playAnswer(video, id, finished, onLiveFail) {
  if (finished) {
    playFile(video, jobPath(id, "video.mp4"));
  } else {
    playLive(video, jobPath(id, "live.m3u8"), onLiveFail);
  }
  captions(video, finished ? id : null);
}

// The finished video's subtitles as captions (none for a live stream): <track> reads WebVTT,
// the server writes SRT.
async function captions(video, id) {
  for (const track of video.querySelectorAll("track")) {
    URL.revokeObjectURL(track.src);
    track.remove();
  }
  if (!id) return;
  let srt;
  try {
    const res = await fetch(jobPath(id, "video.srt"), { headers: authHeaders() });
    if (!res.ok) return;
    srt = await res.text();
  } catch {
    return;
  }
  const vtt = "WEBVTT\n\n" + srt.replace(/\r/g, "").replace(/(\d\d:\d\d:\d\d),(\d\d\d)/g, "$1.$2");
  const track = document.createElement("track");
  Object.assign(track, { kind: "captions", label: "Reply", srclang: "en", src: URL.createObjectURL(new Blob([vtt], { type: "text/vtt" })) });
  video.append(track);
}
