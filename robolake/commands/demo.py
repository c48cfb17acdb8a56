"""`robolake demo`: a tour of the platform's parts on the embedded default (no services needed).
(`make demo` runs the main job, `robolake run`, on a small experiment.)

The tour: the skill library is announced, two rollout workers run the scripted experts on "put the
red block on the blue block" in the MuJoCo Panda scene with camera frames, a consumer group reads
the log back as a conversation, a poison message lands in the dead-letter topic with its reason,
the lake sink writes the log into the lake's tables, SQL answers from the lake, and every reward
function relabels the historic steps (what else did those episodes achieve?).
"""

from __future__ import annotations

from infra.settings import Settings
from robolake.commands.common import check_lake_writable, positive_int

TOUR = "tour"  # the tour's own experiment: `make demo`'s `robolake run` is experiment "demo"


def register(commands, common) -> None:
    demo = commands.add_parser("demo", parents=[common], help="a tour of the platform's parts on the embedded default",
                               description=__doc__.split("\n\n")[1].replace("\n", " "))
    demo.add_argument("--episodes", type=positive_int, default=4, metavar="N", help="simulated episodes to run (default 4)")
    demo.set_defaults(run=run_demo)


def run_demo(args, settings: Settings) -> int:
    from consumers.conversation import describe, describe_dead_letter
    from infra.bus.backend import open_bus
    from producers.rollout import RolloutConfig, task_for
    from producers.sim.announce import announce_skills
    from producers.workers import produce_episodes
    from robolake.failures import failure
    from schemas import topics

    check_lake_writable(settings)
    bus = open_bus(settings)
    print(f"== robolake demo on bus={settings.bus}\n")
    producer = bus.producer()
    announce_skills(producer)
    config = RolloutConfig(skills=task_for("place_red_on_blue"), task_skill="place_red_on_blue", frames=True,
                           experiment_id=TOUR, chunk_steps=10)
    produce_episodes(settings, config, episodes=args.episodes, workers=2, describe_failure=failure)
    producer.send_raw(topics.EPISODES, b"poison", b"these bytes are not an Arrow stream",
                      [("robolake.type", b"episode.steps"), ("robolake.version", b"1")])
    producer.flush()
    print(f"announced the skill library; 2 workers ran {args.episodes} episodes; one poison message sent\n")

    print(f"-- the log as a conversation (consumer group '{TOUR}'):")
    consumer = bus.consumer(TOUR, [topics.SKILLS, topics.EPISODES])
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

    from consumers.lake_sink.sink import LakeSink
    from infra.lake_sql import open_lake, query

    stats = LakeSink(settings, bus=bus, flush_seconds=1.0).run(until_idle_s=0.5)
    print(f"\n-- the lake sink wrote {stats.rows} rows in {stats.commits} transactions to {settings.lake_root}")
    con = open_lake(settings)
    for sql in ("SELECT experiment_id, count(*) AS episodes, avg(task_success::INT) AS success_rate, "
                "sum(length) AS steps FROM episodes GROUP BY ALL ORDER BY ALL",
                "SELECT skill_id, count(*) AS steps, round(avg(reward), 3) AS mean_reward FROM steps "
                f"WHERE experiment_id = '{TOUR}' GROUP BY ALL ORDER BY ALL",
                "SELECT count(*) AS frames, round(avg(octet_length(frame))) AS png_bytes FROM frames"):
        print(f"\nrobolake sql \"{sql}\"")
        print(query(con, sql))
    con.close()

    from learner.relabel import relabel, resolve

    stats = relabel(settings, resolve(None, everything=True), where=f"experiment_id = '{TOUR}'", publish=False)
    print(f"\n-- relabelled {stats.steps} historic steps with {len(stats.rows_by_function)} reward functions "
          f"({stats.rows} rows in the rewards table): what else did these episodes achieve?")
    sql = ("SELECT reward_fn || '@' || reward_version AS reward_function, count(*) FILTER (WHERE achieved) AS "
           "episodes_achieving, round(avg(first_step), 1) AS mean_first_step FROM achievements "
           "GROUP BY ALL HAVING episodes_achieving > 0 ORDER BY ALL")
    print(f"\nrobolake sql \"{sql}\"")
    print(query(open_lake(settings), sql))
    print("next: `make test` runs the same contracts on real Kafka + MinIO; "
          "`robolake infra up` starts them for you.")
    return 0
