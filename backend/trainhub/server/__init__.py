"""`trainhub server`: a job server and web dashboard over the hub (docs/server.md).

store.py keeps the job table (SQLite in trainhub's home); admit.py checks a submitted job (validate's
checks, then allowed roots and code); queue.py runs jobs through `train`, one per slot, and finds them
again after a restart; app.py is the HTTP API and page.html the dashboard; main.py builds and serves it.
Nothing in trainhub imports this package but the command line.
"""
