"""Topic names: part of the contract between producers and consumers."""

EPISODES = "robolake.episodes"      # episode.started / episode.steps / episode.ended, keyed by episode id
CURRICULUM = "robolake.curriculum"  # curriculum.proposal / .decision / .missing_skill, keyed by experiment id
SKILLS = "robolake.skills"          # skill.added
LEARNER = "robolake.learner"        # learner.metrics
ANALYSIS = "robolake.analysis"      # analysis.verdict
SUMMARIES = "robolake.summaries"    # skill.summary, keyed by experiment id
VLM = "robolake.vlm"                # vlm.call: every call of the experimenter's model, keyed by experiment id
LINEAGE = "robolake.lineage"        # relabel.completed: what derived data was computed from what
RUNS = "robolake.runs"              # run.stage: what `robolake run` finished, keyed by experiment id
DLQ = "robolake.dlq"                # dead letters: raw bytes plus headers naming the reason and the source

ALL = (EPISODES, CURRICULUM, SKILLS, LEARNER, ANALYSIS, SUMMARIES, VLM, LINEAGE, RUNS, DLQ)
