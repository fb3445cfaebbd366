"""A byte-level tokenizer built locally: ids 0-255 are the UTF-8 bytes, then pad, bos and eos."""

from __future__ import annotations


class ByteTokenizer:
    """Maps text to UTF-8 bytes plus three special ids; never downloads or trains anything.

    Every string round-trips exactly (`decode(encode(s)) == s`), so a sequence's token count is its
    UTF-8 length plus the bos/eos pair: `data.py` uses that to hit target lengths exactly.
    """

    pad_token_id = 256
    bos_token_id = 257
    eos_token_id = 258
    vocab_size = 259

    def encode(self, text: str, *, add_special_tokens: bool = True, max_length: int | None = None) -> list[int]:
        """Token ids of `text`; with `max_length`, the first `max_length` ids (eos included only if it fits)."""
        ids = list(text.encode("utf-8"))
        if add_special_tokens:
            ids = [self.bos_token_id, *ids, self.eos_token_id]
        return ids if max_length is None else ids[:max_length]

    def decode(self, ids: list[int], *, skip_special_tokens: bool = True) -> str:
        """The text of `ids`; special ids are dropped (or shown as <pad>/<s>/</s>), bad byte runs replaced."""
        out, run = [], bytearray()
        names = {self.pad_token_id: "<pad>", self.bos_token_id: "<s>", self.eos_token_id: "</s>"}
        for i in ids:
            if 0 <= i < 256:
                run.append(i)
                continue
            out.append(run.decode("utf-8", errors="replace"))
            run = bytearray()
            if i not in names:
                raise ValueError(f"token id {i} is outside the vocabulary of {self.vocab_size}")
            if not skip_special_tokens:
                out.append(names[i])
        out.append(run.decode("utf-8", errors="replace"))
        return "".join(out)

    def num_tokens(self, text: str) -> int:
        """Length of `encode(text)` without building the list."""
        return len(text.encode("utf-8")) + 2
