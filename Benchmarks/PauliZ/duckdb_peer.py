"""The peer of the Pauli-Z replay benchmark: DuckDB computing the same rows.

Reads the flip events (as `lodestone consume` printed them: resource, from, to, resolved
polarity, actor, reason, epoch, seq, time, partition, offset) from a Parquet file, computes
every figure of Docs/spec/pauli-z.md section 5 except storm_ms for one-minute tumbling windows
(or --window-ms), and writes the rows as JSON lines. Only that query is timed.

    python3 duckdb_peer.py export EVENTS.jsonl EVENTS.parquet       (once, not timed)
    python3 duckdb_peer.py run EVENTS.parquet ROWS.jsonl --window-ms 60000
    python3 duckdb_peer.py compare DUCK_ROWS.jsonl LODESTONE_ROWS.jsonl

Log order per resource is (partition, offset): a resource lives in one partition.
"""
import argparse
import json
import sys
import time

import duckdb


def export(events_jsonl, parquet):
    con = duckdb.connect()
    con.execute(f"""
        COPY (SELECT resource, "from" AS from_state, "to" AS to_state, polarity::TINYINT AS polarity,
                     actor, reason, epoch::BIGINT AS epoch, seq::BIGINT AS seq, "time"::BIGINT AS time,
                     partition::INTEGER AS partition, "offset"::BIGINT AS log_offset
              FROM read_json('{events_jsonl}', format='newline_delimited', columns={{
                  'resource':'VARCHAR','from':'VARCHAR','to':'VARCHAR','polarity':'BIGINT','actor':'VARCHAR',
                  'reason':'VARCHAR','epoch':'BIGINT','seq':'BIGINT','time':'BIGINT','partition':'BIGINT',
                  'offset':'BIGINT'}}))
        TO '{parquet}' (FORMAT PARQUET)""")
    count = con.execute(f"SELECT count(*) FROM '{parquet}'").fetchone()[0]
    print(json.dumps({"exported": count, "parquet": parquet}))


QUERY = """
WITH ordered AS (
    SELECT *,
        max(time) OVER w_run AS t,
        lag(to_state) OVER w AS prev_to,
        lag(epoch) OVER w AS prev_epoch,
        lag(seq) OVER w AS prev_seq,
        row_number() OVER w AS n
    FROM '{parquet}'
    WINDOW w AS (PARTITION BY resource ORDER BY partition, log_offset),
           w_run AS (PARTITION BY resource ORDER BY partition, log_offset ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
horizon AS (SELECT max(time) AS hz FROM '{parquet}'),
derived AS (
    SELECT o.*,
        lag(t) OVER w AS prev_t,
        lag(polarity) OVER w AS prev_polarity,
        coalesce(lead(t) OVER w, h.hz) AS next_t,
        min(t) OVER (PARTITION BY resource) AS t_first,
        h.hz AS hz,
        floor(t / {W})::BIGINT * {W} AS s,
        to_state <> CASE WHEN from_state <> '' THEN from_state WHEN prev_to IS NULL THEN to_state ELSE prev_to END AS is_flip
    FROM ordered o, horizon h
    WINDOW w AS (PARTITION BY resource ORDER BY partition, log_offset)
),
contributions AS (
    SELECT resource, s, is_flip, polarity, actor, reason, from_state, prev_to, epoch, prev_epoch, seq, prev_seq, time, prev_t, t_first, hz,
        -- the state of this event from t to the next event, inside its window
        polarity::BIGINT * (least(next_t, s + {W}, hz) - t) AS own,
        -- the state carried into the window from the previous event, for the window's first event
        CASE WHEN prev_t IS NOT NULL AND floor(prev_t / {W})::BIGINT * {W} < s THEN prev_polarity::BIGINT * (t - s) ELSE 0 END AS carried
    FROM derived
)
SELECT resource, s AS window_start, s + {W} AS window_end,
    count(*) AS events,
    count(*) FILTER (WHERE is_flip) AS flips,
    count(*) FILTER (WHERE is_flip AND polarity = 1) AS up,
    count(*) FILTER (WHERE is_flip AND polarity = -1) AS down,
    count(*) FILTER (WHERE is_flip AND polarity = 1) - count(*) FILTER (WHERE is_flip AND polarity = -1) AS net_polarity,
    count(*) FILTER (WHERE is_flip) * 60000.0 / {W} AS flip_rate_per_min,
    count(*) FILTER (WHERE NOT is_flip) AS readouts,
    CASE WHEN count(*) FILTER (WHERE is_flip) = 0 THEN NULL
         ELSE count(*) FILTER (WHERE is_flip AND actor <> '' AND reason <> '') / count(*) FILTER (WHERE is_flip) END AS cause_coverage,
    count(*) FILTER (WHERE prev_to IS NOT NULL AND from_state <> '' AND from_state <> prev_to) AS chain_breaks,
    count(*) FILTER (WHERE prev_epoch IS NOT NULL AND epoch = prev_epoch AND seq > prev_seq + 1) AS seq_gaps,
    count(*) FILTER (WHERE prev_epoch IS NOT NULL AND epoch > prev_epoch) AS epoch_changes,
    count(*) FILTER (WHERE prev_t IS NOT NULL AND time < prev_t) AS clock_regressions,
    greatest(0, least(s + {W}, max(hz)) - greatest(s, min(t_first))) AS known_ms,
    CASE WHEN greatest(0, least(s + {W}, max(hz)) - greatest(s, min(t_first))) = 0 THEN NULL
         ELSE (sum(own) + sum(carried)) / greatest(0, least(s + {W}, max(hz)) - greatest(s, min(t_first))) END AS z_mean
FROM contributions
GROUP BY resource, s
ORDER BY window_start, resource
"""


def run(parquet, out, window_ms):
    con = duckdb.connect()
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    started = time.monotonic()
    con.execute(f"COPY ({QUERY.format(parquet=parquet, W=window_ms)}) TO '{out}' (FORMAT JSON)")
    seconds = time.monotonic() - started
    events = con.execute(f"SELECT count(*) FROM '{parquet}'").fetchone()[0]
    rows = con.execute(f"SELECT count(*) FROM read_json('{out}', format='newline_delimited')").fetchone()[0]
    print(json.dumps({"engine": "duckdb", "version": duckdb.__version__, "threads": threads, "events": events,
                      "rows": rows, "seconds": round(seconds, 2), "events_per_second": round(events / seconds)}))


FIGURES = ["events", "flips", "up", "down", "net_polarity", "flip_rate_per_min", "readouts", "cause_coverage",
           "chain_breaks", "seq_gaps", "epoch_changes", "clock_regressions", "known_ms", "z_mean"]


def compare(duck_rows, lodestone_rows):
    """Every row and figure (storm_ms aside) equal; floats compared as floats (equal spellings)."""
    con = duckdb.connect()
    columns = ", ".join(["resource", "window_start", "window_end"] + FIGURES)
    types = {"resource": "VARCHAR", "window_start": "BIGINT", "window_end": "BIGINT", "flip_rate_per_min": "DOUBLE",
             "cause_coverage": "DOUBLE", "z_mean": "DOUBLE"}
    spec = "{" + ", ".join(f"'{c}':'{types.get(c, 'BIGINT')}'" for c in ["resource", "window_start", "window_end"] + FIGURES) + "}"
    con.execute(f"CREATE VIEW d AS SELECT {columns} FROM read_json('{duck_rows}', format='newline_delimited', columns={spec})")
    con.execute(f"CREATE VIEW l AS SELECT {columns} FROM read_json('{lodestone_rows}', format='newline_delimited', columns={spec})")
    only_duck = con.execute("SELECT count(*) FROM (SELECT * FROM d EXCEPT ALL SELECT * FROM l)").fetchone()[0]
    only_lodestone = con.execute("SELECT count(*) FROM (SELECT * FROM l EXCEPT ALL SELECT * FROM d)").fetchone()[0]
    total = con.execute("SELECT count(*) FROM l").fetchone()[0]
    result = {"rows": total, "only_duckdb": only_duck, "only_lodestone": only_lodestone, "equal": only_duck == 0 and only_lodestone == 0}
    if not result["equal"]:
        result["examples"] = [list(map(str, r)) for r in con.execute("SELECT * FROM (SELECT * FROM d EXCEPT ALL SELECT * FROM l) LIMIT 3").fetchall()]
        result["examples_lodestone"] = [list(map(str, r)) for r in con.execute("SELECT * FROM (SELECT * FROM l EXCEPT ALL SELECT * FROM d) LIMIT 3").fetchall()]
    print(json.dumps(result))
    return 0 if result["equal"] else 1


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export"); e.add_argument("events_jsonl"); e.add_argument("parquet")
    r = sub.add_parser("run"); r.add_argument("parquet"); r.add_argument("out"); r.add_argument("--window-ms", type=int, default=60000)
    c = sub.add_parser("compare"); c.add_argument("duck_rows"); c.add_argument("lodestone_rows")
    args = parser.parse_args()
    if args.command == "export":
        export(args.events_jsonl, args.parquet)
    elif args.command == "run":
        run(args.parquet, args.out, args.window_ms)
    else:
        sys.exit(compare(args.duck_rows, args.lodestone_rows))


if __name__ == "__main__":
    main()
