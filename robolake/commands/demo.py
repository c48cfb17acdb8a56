"""`robolake demo`: the main job on the embedded default (no services needed).

Today it runs the event log and the lake end to end: synthetic episodes stream onto the bus, a
consumer group reads them back as a conversation, a poison message lands in the dead-letter
topic with its reason, the lake sink writes the log as Parquet, and SQL answers from the lake.
It grows with the loop (simulator, learner, curriculum) as those parts land.
"""

from __future__ import annotations

from robolake.settings import Settings


def register(commands, common) -> None:
    demo = commands.add_parser("demo", parents=[common], help="run the main job on the embedded default",
                               description=__doc__.split("\n\n")[1].replace("\n", " "))
    demo.add_argument("--episodes", type=int, default=3, help="synthetic episodes to stream (default 3)")
    demo.set_defaults(run=run_demo)


def run_demo(args, settings: Settings) -> int:
    from consumers.conversation import describe, describe_dead_letter
    from infra.bus import open_bus
    from producers.synthetic import SyntheticConfig, produce
    from schemas import topics

    bus = open_bus(settings)
    print(f"== robolake demo on bus={settings.bus}\n")
    producer = bus.producer()
    ids = produce(producer, SyntheticConfig(episodes=args.episodes, steps=20, chunk_steps=10, experiment_id="demo"))
    producer.send_raw(topics.EPISODES, b"poison", b"these bytes are not an Arrow stream",
                      [("robolake.type", b"episode.steps"), ("robolake.version", b"1")])
    producer.flush()
    print(f"streamed {len(ids)} synthetic episodes and one poison message to {topics.EPISODES}\n")

    print("-- the log as a conversation (consumer group 'demo'):")
    consumer = bus.consumer("demo", [topics.EPISODES])
    deliveries = []
    while batch := consumer.poll(0.5):
        deliveries += batch
    for delivery in sorted(deliveries, key=lambda d: d.timestamp_ms):
        print("  " + describe(delivery))
    consumer.commit()
    consumer.close()

    print("\n-- dead letters:")
    reader = bus.consumer(None, [topics.DLQ])
    letters = []
    while batch := reader.poll_raw(0.5):
        letters += batch
    for letter in letters:
        print("  " + describe_dead_letter(letter))
    reader.close()

    from consumers.lake_sink import LakeSink
    from infra.lake_sql import open_lake, query

    stats = LakeSink(settings, bus=bus, flush_seconds=1.0).run(until_idle_s=0.5)
    print(f"\n-- the lake sink wrote {stats.rows} rows in {stats.files} Parquet files to {settings.lake_root}")
    con = open_lake(settings)
    for sql in ("SELECT experiment_id, count(*) AS episodes, avg(task_success::INT) AS success_rate, "
                "sum(length) AS steps FROM episodes GROUP BY ALL ORDER BY ALL",
                "SELECT skill_id, count(*) AS steps, round(avg(reward), 3) AS mean_reward FROM steps "
                "WHERE experiment_id = 'demo' GROUP BY ALL ORDER BY ALL"):
        print(f"\nrobolake sql \"{sql}\"")
        print(query(con, sql))
    print("next: `make test` runs the same contracts on real Kafka + MinIO; "
          "`robolake infra up` starts them for you.")
    return 0
