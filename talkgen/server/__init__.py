"""`talkgen serve`: the avatar in a browser, and a job API, on your own hardware.

    serve.py     the command: checks, the folder's lock, the socket, the workers, uvicorn
    app.py       the routes (FastAPI): the page, /v1/health, /v1/jobs and each job's files
    auth.py      who may talk to the server: loopback, or a bearer token; Host and Origin
    intake.py    what a client may send: the job's fields, the overrides allow-list, uploads judged by content
    uploads.py   a request body read as it streams, refused once over its cap
    store.py     the served jobs on disk: who asked what, and what became of it
    sessions.py  a conversation, kept as `talkgen chat` keeps one
    dispatch.py  the jobs to the batch's warm workers (its own loop), their fate back
    views.py     a job as the API shows it
    events.py    a job's event log as server-sent events
    files.py     where a job's video, subtitles, report and live playlist are
    page/        the page (HTML, JS, the vendored hls.js), served at / and /page/

fastapi, uvicorn and python-multipart are imported here only, so `import talkgen` stays light.
"""
