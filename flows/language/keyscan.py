"""Refuse private key material in playbooks and inventories, comments included.

- 64 hex digits (with or without 0x) anywhere in the text, except inside values of fields
  typed as tx hash, bytes32, storage slot or role id;
- a run of 12 or more BIP-39 words (a mnemonic).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from breakglass.flows.errors import Diagnostic
from breakglass.flows.language.yamlpos import Document, Loc

_HEX64 = re.compile(r"(?<![0-9A-Za-z])(?:0x)?[0-9a-fA-F]{64}(?![0-9A-Za-z])")
_WORD = re.compile(r"[a-z]+")


@cache
def _wordlist() -> frozenset[str]:
    import eth_account

    path = Path(eth_account.__file__).parent / "hdaccount" / "wordlist" / "english.txt"
    return frozenset(path.read_text().split())


def scan(doc: Document, exempt: set[Loc]) -> list[Diagnostic]:
    spans = [(start, end) for start, end, loc in doc.scalars if loc in exempt]
    out: list[Diagnostic] = []
    for match in _HEX64.finditer(doc.text):
        if any(start <= match.start() < end for start, end in spans):
            continue
        line, col = _position(doc.text, match.start())
        out.append(Diagnostic(doc.path, line, col, "secrets",
                              "64 hex digits look like a private key; key material never belongs in a playbook or inventory",
                              "Declare a signer (kind: env, keystore or external) and reference it by name."))
    words = _wordlist()
    for number, text in enumerate(doc.text.splitlines(), start=1):
        run, first = 0, None
        for match in _WORD.finditer(text.lower()):
            if match.group() in words:
                run += 1
                first = match.start() if run == 1 else first
                if run == 12:
                    out.append(Diagnostic(doc.path, number, (first or 0) + 1, "secrets",
                                          "this looks like a BIP-39 mnemonic (12 or more wordlist words in a row)",
                                          "Never write a seed phrase into a file; use a keystore or an external signer."))
                    break
            else:
                run = 0
    return out


def _position(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1
