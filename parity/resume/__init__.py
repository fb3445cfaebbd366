"""Resume checks: does a run stopped at step k and resumed in a fresh process continue bit-exactly?"""
