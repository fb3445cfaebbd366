"""accelerate loop fork, harmful: clip threshold 0.5 -> 1.0."""

import _path  # noqa: F401

from accelerate_loop.train import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(max_grad_norm=1.0))
