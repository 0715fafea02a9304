"""Credit assignment for SFT on unresolved episodes: label every assistant step, train on the productive part.

Orchard's exact credit-assignment procedure is unpublished; this package is our reading of it. A step is one
assistant message (its tool calls, or the action in its text under `react` / `bash-only`), and its
observations are the messages after it up to the next one (`steps`). A scorer gives every step one label
(`labels`):

- good: moved the task on, or at least nothing says it went wrong;
- unnecessary: ran fine but changed nothing (the same action with the same result again, an empty command);
- mistake: went wrong; `critical` when it derails the episode, which is where the `prefix` policy cuts;
- recovery: a clean step right after a failed one, or a step that reverts an earlier bad edit.

`trained_steps` turns labels into the assistant messages that get loss; the others stay in the context.

`HeuristicScorer` (`heuristic`) reads only what the envs and harnesses print: errored actions (`signals`),
reverted edits, worse test runs and repeated actions. Critical means the agent did not get back on track, so
later steps build on the mistake:

- failing again with the very action that just failed: it ignored the error message;
- the third identical action with the same result: a loop;
- a test regression never undone (no revert of the blamed edit, no later run back to the earlier counts);
- the first of `error_streak` (default 3) failed steps in a row: the agent is flailing;
- ending an unresolved episode (`submit` / `finish`): training on it teaches stopping with the work undone.

Not critical: one failed action followed by a different one (the agent read the error), a reverted edit (it
undid the edit itself), a regression later undone, a single identical repeat of a successful action.

`JudgeScorer` (`judge`) asks any agent endpoint for the labels instead; a step the judge leaves unlabelled or
labels invalidly gets the heuristic label, with a reason that says so. Reasons count steps from 1 ("step 3"
is the third assistant message), as the judge's transcript does.
"""

from orchard_envs.trainers.credit.heuristic import HeuristicScorer
from orchard_envs.trainers.credit.judge import JudgeScorer
from orchard_envs.trainers.credit.labels import (
    LABELS,
    POLICIES,
    SCORERS,
    StepLabel,
    StepLabelName,
    StepScorer,
    make_scorer,
    trained_steps,
)

__all__ = [
    "LABELS",
    "POLICIES",
    "SCORERS",
    "HeuristicScorer",
    "JudgeScorer",
    "StepLabel",
    "StepLabelName",
    "StepScorer",
    "make_scorer",
    "trained_steps",
]
