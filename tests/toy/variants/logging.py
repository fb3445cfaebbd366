"""Variant, training-identical: extra prints every step and a tqdm progress bar on stderr.

Nothing here touches an RNG, a tensor or the step order; only output changes.
"""

import sys
from pathlib import Path

# Run as a script, this folder is sys.path[0], and its logging.py would shadow the stdlib module
# that torch imports; swap the folder for tests/toy, where train.py lives.
_HERE = Path(__file__).resolve().parent
sys.path = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from train import Trainer, main  # noqa: E402


try:
    from tqdm import tqdm
except ImportError:  # tqdm is optional here: fall back to plain prints on stderr
    tqdm = None


class LoggingTrainer(Trainer):
    _bar = None

    def log(self, step, loss, grad_norm):
        print(f"[verbose] step {step} loss {loss.item():.6f} grad_norm {grad_norm.item():.6f}")
        if tqdm is None:
            print(f"progress {step + 1}/{self.args.steps}", file=sys.stderr)
        else:
            if self._bar is None:
                # initial=step so a resumed run's bar starts where the checkpoint left off.
                self._bar = tqdm(total=self.args.steps, initial=step, file=sys.stderr)
            self._bar.update(1)
            if step == self.args.steps - 1:
                self._bar.close()
        super().log(step, loss, grad_norm)


if __name__ == "__main__":
    raise SystemExit(main(trainer_cls=LoggingTrainer))
