"""accelerate loop fork, benign: print every update instead of every 2."""

import _path  # noqa: F401

from accelerate_loop.train import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(log_every=1))
