"""The observation's named fields, by version: what each float of `steps.observation` means.

A version only appends fields, so a float keeps its position in every later version: a reader of
v1 (reward functions, a model trained on v1 episodes) reads the first `size(1)` floats of a v2
observation unchanged. An episode's observation version is its `env_version`
(`episode.started`).

- v1 (43 floats): arm joint positions (7) and velocities (7), gripper opening in metres (1), the
  grip point's position (3) and quaternion (4), then per cube (red, green, blue) position (3) and
  quaternion (4).
- v2 (46 floats): v1, then the controller's set point (3), the point the hand is being driven to.
  The scripted experts act on `(goal - set point) / max_step`: without it a Markov policy sees
  "hand 3 cm short" labelled both "hold" (the set point is already there) and "move".
"""

from __future__ import annotations

ENV_NAME = "panda_block_stacking"  # the environment whose observation this is (producers/sim/env.py)
# Its action (4 floats in [-1, 1]): the grip point's displacement in units of the step size, and the
# gripper command (> 0 open).
ACTION_NAMES = ("dx", "dy", "dz", "gripper")
COLOURS = ("red", "green", "blue")  # the cubes, in observation order (producers.sim.scene.COLOURS)

_V1 = (("joint_positions", 7), ("joint_velocities", 7), ("gripper_opening", 1), ("hand_xyz", 3), ("hand_quat", 4),
       *((f"{c}_{part}", n) for c in COLOURS for part, n in (("xyz", 3), ("quat", 4))))
FIELDS: dict[int, tuple[tuple[str, int], ...]] = {1: _V1, 2: _V1 + (("setpoint_xyz", 3),)}
CURRENT = max(FIELDS)


class UnknownObservationVersion(ValueError):
    pass


def fields(version: int = CURRENT) -> tuple[tuple[str, int], ...]:
    """(name, number of floats) in order."""
    if version not in FIELDS:
        raise UnknownObservationVersion(f"observation version {version!r} is unknown; known: "
                                        + ", ".join(map(str, FIELDS)))
    return FIELDS[version]


def float_names(field: str) -> list[str]:
    """The names of a field's floats. The grip point is `ee_*`: reward functions index by these
    names and hash their source, so they stay as v1 had them."""
    if field in ("joint_positions", "joint_velocities"):
        return [f"{'q' if field == 'joint_positions' else 'dq'}{i}" for i in range(1, 8)]
    entity, _, kind = field.rpartition("_")
    axes = {"xyz": ("x", "y", "z"), "quat": ("qw", "qx", "qy", "qz")}.get(kind)
    return [f"{'ee' if entity == 'hand' else entity}_{a}" for a in axes] if axes else [field]


def names(version: int = CURRENT) -> list[str]:
    """One name per float of the observation, in order."""
    return [name for field, _ in fields(version) for name in float_names(field)]


def size(version: int = CURRENT) -> int:
    return sum(n for _, n in fields(version))


def offsets(version: int = CURRENT) -> dict[str, slice]:
    """Field name -> its slice of the flat observation."""
    out, start = {}, 0
    for name, n in fields(version):
        out[name] = slice(start, start + n)
        start += n
    return out


def version_of(length: int) -> int:
    """The version whose observation has `length` floats (they all differ)."""
    for version in FIELDS:
        if size(version) == length:
            return version
    raise UnknownObservationVersion(f"no observation version has {length} floats; known: "
                                    + ", ".join(f"v{v} = {size(v)}" for v in FIELDS))


def sql_struct(column: str = "observation") -> str:
    """A DuckDB expression over a `steps.observation` list: a STRUCT with one member per named field of
    any version (a FLOAT for a 1-float field, else a FLOAT list), NULL where the row's version (told by
    its length) lacks the field or the length is no version's, e.g. `obs.setpoint_xyz` of v1 rows."""
    members = []
    for name, where in offsets(CURRENT).items():
        lengths = ", ".join(str(size(v)) for v in FIELDS if name in offsets(v))
        # DuckDB lists are 1-based and their slices include both ends
        value = (f"{column}[{where.start + 1}]" if where.stop - where.start == 1
                 else f"{column}[{where.start + 1}:{where.stop}]")
        members.append(f"{name} := CASE WHEN len({column}) IN ({lengths}) THEN {value} END")
    return f"struct_pack({', '.join(members)})"
