"""The picture the experimenter looks at: a 256x256 PNG of the scene as a recent episode of the
experiment began, re-rendered from the `initial_state` its `episode.started` event recorded (the
lake keeps only small per-step frames, if any; the state is always there).

The image is a pure function of the episode's state, so the same lake gives the same picture and
a replayed round asks the same question. Episodes whose state is not this simulator's (synthetic
ones) are skipped; with none, the scene of `reset(seed=0)` is shown and the log says so.
"""

from __future__ import annotations

import logging

from consumers.curriculum.vlm import Image

log = logging.getLogger(__name__)

SIZE = 256
CAMERA = "scene"

_RECENT = """
    SELECT episode_id, initial_state FROM episodes
    WHERE experiment_id = ? AND env_name = ? AND len(initial_state) = ?
    ORDER BY started_at DESC, episode_id LIMIT 1"""


def scene_image(con, experiment_id: str) -> Image:
    """The scene at the start of the experiment's most recent simulated episode (`con`: the lake's
    views, infra.lake_sql.open_lake)."""
    from producers.sim.env import ENV_NAME, BlockStackingEnv

    env = BlockStackingEnv()
    try:
        found = con.execute(_RECENT, [experiment_id, ENV_NAME, env.model.nq + env.model.nv]).fetchone()
        if found is None:
            log.info("experiment %s has no simulated episode in the lake: showing the scene of reset(seed=0)",
                     experiment_id)
            env.reset(seed=0)
            name = "reset/seed-0"
        else:
            env.reset(seed=0)
            env.restore_state(found[1])
            name = f"episode/{found[0]}/initial"
        return Image(name, encode_png(env.frame(CAMERA, SIZE)))
    finally:
        env.close()


def encode_png(pixels) -> bytes:
    import io

    from PIL import Image as PILImage

    out = io.BytesIO()
    PILImage.fromarray(pixels).save(out, format="PNG", optimize=True)  # once per round: size over speed
    return out.getvalue()
