"""`edge serve`: an OpenAI-compatible chat-completions server for Extract+Think.

One pipeline per process; requests are admitted into a bounded queue and run one at a
time, in order, on one worker thread (`engine`). The HTTP side is FastAPI on uvicorn
(`app`, `routes`); requests are parsed from the OpenAI JSON by `chat_request` (images by
`images`, multiple-choice options by `choices`), answered as one JSON object or as SSE
chunks (`responses`), guarded by `security` and counted in `metrics`. `server` binds the
socket, runs uvicorn and shuts down in order: stop accepting, drain, stop the worker,
then close the pipeline. docs/serve.md describes the API.
"""
