"""Subprocess worker for the interruption tests: a tiny distillation that checkpoints every step.

usage: python _train_worker.py OUTPUT_DIR MAX_STEPS [resume]
Prints "stopped by SIGNAL at step N" when a signal stopped it, then "done N" at the end.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from conftest import random_dataset, tiny_bert  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from nlpkd import DistillationConfig, DistillationTrainer, create_student  # noqa: E402


class Slow(TrainerCallback):
    # Wide enough steps that the test can send its signal mid-run.
    def on_step_end(self, args, state, control, **kwargs):
        time.sleep(0.3)


def main() -> None:
    output_dir, max_steps = sys.argv[1], int(sys.argv[2])
    resume = len(sys.argv) > 3 and sys.argv[3] == "resume"
    teacher = tiny_bert(seed=1)
    args = DistillationConfig(
        output_dir=output_dir,
        max_steps=max_steps,
        per_device_train_batch_size=4,
        save_steps=1,
        save_strategy="steps",
        logging_steps=1,
        learning_rate=1e-3,
        report_to=[],
        seed=0,
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = DistillationTrainer(
        model=create_student(teacher, 2),
        teacher=teacher,
        args=args,
        train_dataset=random_dataset(40, 8),
        callbacks=[Slow()],
    )
    print("started", flush=True)
    trainer.train(resume_from_checkpoint=True if resume else None)
    if trainer.stopped_by_signal:
        print(
            f"stopped by {trainer.stopped_by_signal} at step {trainer.state.global_step}",
            flush=True,
        )
    print(f"done {trainer.state.global_step}", flush=True)


if __name__ == "__main__":
    main()
