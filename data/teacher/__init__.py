"""The Cohere teacher pipeline: write marketing conversations from scenario specs, label them, score the teacher.

Modules, one job each:
    config    TeacherConfig (YAML + key=value overrides, defaults that run) and the API-key lookup
    client    the cohere V2 client: retries with backoff + jitter, request / token budget, usage accounting
    runner    runs tasks concurrently, validates answers (bounded retries), writes shards, stops on budget
    generate  scenario specs -> conversation-writing requests -> validated Examples
    label     conversations -> labelling requests -> validated labels + rationale
    shards    resumable, atomic output shards (JSONL + Parquet) of accepted and rejected rows
    dedup     near-duplicate conversations (word shingles, MinHash + LSH, exact Jaccard check)
    coverage  counts per label / industry / length bucket against the config's targets
    estimate  dry-run request / token / cost estimates (no network, no key)
    evaluate  the teacher as a router with the one prompt and parser, scored with data.metrics
    cli       `memroute teacher generate | label | eval | coverage`

Nothing here imports the cohere SDK at module import except client.py, which only the commands that call the
API load, so dry runs and coverage reports start fast.
"""
