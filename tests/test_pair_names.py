"""A pair named on the command line that does not exist: the close bundled names come first."""

from __future__ import annotations

import pytest

from parity.exceptions import ConfigError
from parity.pairs import load_pair


def test_a_mistyped_pair_name_gets_the_close_ones_first():
    with pytest.raises(ConfigError, match=r"no pair file 'histocc-ocpast'; did you mean histocc-occpast\b"):
        load_pair("histocc-ocpast")


def test_a_name_like_none_lists_them_all():
    with pytest.raises(ConfigError, match=r"no pair file 'zzz'; bundled pairs: clip-dora-complete, "):
        load_pair("zzz")
