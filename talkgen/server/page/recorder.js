// The Speak button: records a question from the microphone and hands it over as a Blob.

function recordingType() {
  for (const type of ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/mp4"]) {
    if (MediaRecorder.isTypeSupported(type)) return type;
  }
  return "";
}

// One press starts recording, the next stops it and calls onRecorded(blob); say(text) reports.
export function microphone(speak, onRecorded, say) {
  let recorder = null;

  async function start() {
    if (!navigator.mediaDevices || !window.MediaRecorder) {
      say("The microphone needs the page on localhost or https (for example through ssh -L 8000:127.0.0.1:8000).");
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (err) {
      say(`No microphone: ${err.message}`);
      return;
    }
    const type = recordingType();
    recorder = new MediaRecorder(stream, type ? { mimeType: type } : {});
    const parts = [];
    recorder.addEventListener("dataavailable", (event) => parts.push(event.data));
    recorder.addEventListener("stop", () => {
      for (const track of stream.getTracks()) track.stop();
      onRecorded(new Blob(parts, { type: recorder.mimeType }));
      recorder = null;
    });
    recorder.start();
    speak.textContent = "Stop and ask";
    speak.setAttribute("aria-pressed", "true");
    say("Listening… press “Stop and ask” when you are done.");
  }

  function stop() {
    recorder.stop();
    speak.textContent = "Speak";
    speak.setAttribute("aria-pressed", "false");
    say("Sending your question…");
  }

  speak.addEventListener("click", () => (recorder ? stop() : start()));
}
