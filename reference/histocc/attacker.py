"""Text-noise augmentation for training descriptions (the upstream `AttackerClass` role).

All randomness comes from Python's global `random` module, as upstream, so seeding
`random` (and fixing the word-list order) makes the augmentation repeatable.
"""

from __future__ import annotations

import random
import string

_LOWER = string.ascii_lowercase
_LOWER_AND_SPACE = string.ascii_lowercase + " "

# Physical neighbours on a QWERTY keyboard (letters only); other characters are left alone.
_QWERTY_ROWS = ["qwertyuiop", "asdfghjkl", "zxcvbnm"]


def _qwerty_neighbours() -> dict[str, str]:
    neighbours: dict[str, str] = {}
    for r, row in enumerate(_QWERTY_ROWS):
        for c, ch in enumerate(row):
            near = []
            for dr in (-1, 0, 1):
                rr = r + dr
                if not 0 <= rr < len(_QWERTY_ROWS):
                    continue
                for dc in (-1, 0, 1):
                    cc = c + dc
                    if (dr, dc) != (0, 0) and 0 <= cc < len(_QWERTY_ROWS[rr]):
                        near.append(_QWERTY_ROWS[rr][cc])
            neighbours[ch] = "".join(near)
    return neighbours


_NEIGHBOURS = _qwerty_neighbours()


class AttackerClass:
    """Applies random character- and word-level noise to a description.

    Contract: `attack` returns a new string and never touches anything but Python's
    global `random` state. The word list is used as given, so its order decides which
    word an index draw picks.
    """

    def __init__(self, word_list: list[str]):
        self.word_list = word_list
        # Order matters for draw-for-draw reproduction: this is the upstream listing order.
        self.transformations = [
            self.delete_char,
            self.qwerty_substitute,
            self.insert_char,
            self.substitute_char,
            self.swap_chars,
            self.swap_words,
            self.add_random_chars,
            self.insert_word,
        ]

    def attack(self, text: str, alt_prob: float = 0.1, n_trans: int = 3) -> str:
        """With probability alt_prob, apply n_trans transformations drawn with replacement."""
        if random.random() >= alt_prob:
            return text
        for _ in range(n_trans):
            transform = random.choice(self.transformations)
            text = transform(text)
        return text

    @staticmethod
    def delete_char(text: str) -> str:
        if not text:
            return text
        i = random.randrange(len(text))
        return text[:i] + text[i + 1:]

    @staticmethod
    def qwerty_substitute(text: str) -> str:
        if not text:
            return text
        i = random.randrange(len(text))
        near = _NEIGHBOURS.get(text[i].lower())
        if not near:
            return text
        return text[:i] + random.choice(near) + text[i + 1:]

    @staticmethod
    def insert_char(text: str) -> str:
        i = random.randint(0, len(text))
        return text[:i] + random.choice(_LOWER) + text[i:]

    @staticmethod
    def substitute_char(text: str) -> str:
        if not text:
            return text
        i = random.randrange(len(text))
        return text[:i] + random.choice(_LOWER) + text[i + 1:]

    @staticmethod
    def swap_chars(text: str) -> str:
        if len(text) < 2:
            return text
        i = random.randrange(len(text) - 1)
        return text[:i] + text[i + 1] + text[i] + text[i + 2:]

    @staticmethod
    def swap_words(text: str) -> str:
        words = text.split()
        if len(words) < 2:
            return text
        i = random.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
        return " ".join(words)

    @staticmethod
    def add_random_chars(text: str) -> str:
        n = random.randint(1, 20)
        noise = "".join(random.choice(_LOWER_AND_SPACE) for _ in range(n))
        leading = random.random() < 0.5
        trailing = random.random() < 0.5
        # Neither side drawn means both sides, so the call always changes the text.
        if not leading and not trailing:
            leading = trailing = True
        if leading:
            text = noise + text
        if trailing:
            text = text + noise
        return text

    def insert_word(self, text: str) -> str:
        if not self.word_list:
            return text
        words = text.split()
        i = random.randint(0, len(words))
        words.insert(i, random.choice(self.word_list))
        return " ".join(words)
