"""Minimal, fast ABI helpers for the read path: selectors from abis/, word slicing, Multicall3 aggregate3."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

from watcher.resources import load_abi

_SIMPLE_STATIC = ("address", "bool", "uint", "int", "bytes32")


def _canonical(param: dict[str, Any]) -> str:
    t = param["type"]
    if t.startswith("tuple"):
        return "(" + ",".join(_canonical(c) for c in param["components"]) + ")" + t[5:]
    return t


@dataclass(frozen=True, slots=True)
class Fn:
    """One contract function: its selector and its canonical input and output types."""

    name: str
    selector: bytes
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    def encode(self, *args: Any) -> bytes:
        """ABI-encode a call; addresses and integers take a fast path that skips eth_abi."""
        if all(t.startswith(_SIMPLE_STATIC) and "[" not in t for t in self.inputs):
            parts = [self.selector]
            for t, a in zip(self.inputs, args, strict=True):
                if t == "address":
                    parts.append(b"\0" * 12 + bytes.fromhex(a[2:]))
                elif t == "bool":
                    parts.append(int(bool(a)).to_bytes(32, "big"))
                elif t.startswith("int"):
                    parts.append(int(a).to_bytes(32, "big", signed=True))
                else:
                    parts.append(int(a).to_bytes(32, "big"))
            return b"".join(parts)
        return self.selector + abi_encode(list(self.inputs), list(args))

    def decode(self, data: bytes) -> tuple[Any, ...]:
        """Decode the return data with eth_abi (for dynamic outputs; use words() on hot paths)."""
        try:
            return tuple(abi_decode(list(self.outputs), data))
        except Exception as exc:  # eth_abi raises its own hierarchy; callers handle ValueError
            raise ValueError(f"{self.name} returned undecodable data: {exc}") from None


class Contract:
    """The functions of one ABI file, by name."""

    def __init__(self, abi_name: str) -> None:
        self.name = abi_name
        self.fns: dict[str, Fn] = {}
        for item in load_abi(abi_name):
            if item.get("type") != "function":
                continue
            ins = tuple(_canonical(p) for p in item["inputs"])
            outs = tuple(_canonical(p) for p in item["outputs"])
            sel = keccak(text=f"{item['name']}({','.join(ins)})")[:4]
            self.fns[item["name"]] = Fn(item["name"], sel, ins, outs)

    def __getattr__(self, name: str) -> Fn:
        try:
            return self.fns[name]
        except KeyError:
            raise AttributeError(f"{self.name} has no function {name}") from None


def words(data: bytes) -> list[int]:
    """Split return data into 32-byte big-endian words."""
    return [int.from_bytes(data[i : i + 32], "big") for i in range(0, len(data), 32)]


def word(data: bytes, index: int = 0) -> int:
    """The index-th 32-byte word of return data, as an unsigned int."""
    start = index * 32
    if len(data) < start + 32:
        raise ValueError(f"return data has {len(data)} bytes, word {index} is missing")
    return int.from_bytes(data[start : start + 32], "big")


def address_word(w: int) -> str:
    """An ABI word (as an integer) read as a checksum address; ValueError if its high 12 bytes are not zero."""
    if w >> 160:
        raise ValueError("word holds a non-address")
    return to_checksum_address(w.to_bytes(20, "big"))


def word_address(data: bytes, index: int = 0) -> str:
    """The index-th word of return data read as a checksum address."""
    start = index * 32
    if len(data) < start + 32 or any(data[start : start + 12]):
        raise ValueError("return data does not hold an address")
    return to_checksum_address(data[start + 12 : start + 32])


# --- Multicall3 aggregate3, hand-encoded: eth_abi is ~10x slower on thousands of small calls.

MULTICALL3 = Contract("IMulticall3")
_AGG3 = MULTICALL3.aggregate3.selector
_AGG = MULTICALL3.aggregate.selector


def decode_symbol(data: bytes) -> str | None:
    """An ERC20 symbol() answer as text: ABI string or bytes32 (MKR-style); None if empty, malformed or unprintable."""
    raw: bytes | None = None
    if len(data) == 32:
        raw = data.rstrip(b"\0")
    elif len(data) >= 64:
        offset = int.from_bytes(data[:32], "big")
        if offset + 32 <= len(data):
            n = int.from_bytes(data[offset : offset + 32], "big")
            if offset + 32 + n <= len(data):
                raw = data[offset + 32 : offset + 32 + n]
    if not raw:
        return None
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    # A token chooses its own symbol, and it ends up in alerts: no control characters, nothing long.
    return text if text and len(text) <= 32 and text.isprintable() else None


def symbol_or_prefix(ok: bool, data: bytes, token: str) -> str:
    """A token's symbol() for display, or its address prefix when it has none (or a garbled one)."""
    return (decode_symbol(data) if ok else None) or token[:8]


def _pad(n: int) -> int:
    return (n + 31) // 32 * 32


def _encode_calls(selector: bytes, calls: Sequence[tuple[str, bytes]], allow_failure: bool) -> bytes:
    """Encode a (address[, bool], bytes)[] argument: the only difference between aggregate and aggregate3."""
    n = len(calls)
    heads: list[bytes] = []
    bodies: list[bytes] = []
    offset = 32 * n
    # In aggregate3's tuple the bool allowFailure sits between the address and the bytes' offset.
    flag = ((1).to_bytes(32, "big"),) if allow_failure else ()
    data_offset = (0x60 if allow_failure else 0x40).to_bytes(32, "big")
    for target, data in calls:
        heads.append(offset.to_bytes(32, "big"))
        body = b"".join(
            (
                b"\0" * 12 + bytes.fromhex(target[2:]),
                *flag,
                data_offset,
                len(data).to_bytes(32, "big"),
                data,
                b"\0" * (_pad(len(data)) - len(data)),
            )
        )
        bodies.append(body)
        offset += len(body)
    return b"".join((selector, (32).to_bytes(32, "big"), n.to_bytes(32, "big"), *heads, *bodies))


def encode_aggregate3(calls: Sequence[tuple[str, bytes]]) -> bytes:
    """Encode aggregate3((address,bool,bytes)[]) with allowFailure=true for every call."""
    return _encode_calls(_AGG3, calls, allow_failure=True)


def encoded_size(data: bytes) -> int:
    """Bytes one call adds to an aggregate((address,bytes)[]) request."""
    return 128 + _pad(len(data))


def encode_aggregate(calls: Sequence[tuple[str, bytes]]) -> bytes:
    """Encode Multicall's aggregate((address,bytes)[]): every call must succeed."""
    return _encode_calls(_AGG, calls, allow_failure=False)


def decode_aggregate(data: bytes) -> tuple[int, list[bytes]]:
    """Decode aggregate's (uint256 blockNumber, bytes[] returnData), refusing anything out of bounds."""
    try:
        block = _word_at(data, 0)
        base = _word_at(data, 32)
        n = _word_at(data, base)
        start = base + 32
        size = len(data)
        if n > (size - start) // 32:
            raise ValueError(f"claims {n} results")
        from_bytes = int.from_bytes
        out: list[bytes] = []
        append = out.append
        # The hot loop of every check: offsets and lengths read inline, bounds checked once per element.
        for head in range(start, start + 32 * n, 32):
            el = start + from_bytes(data[head : head + 32], "big")
            if el + 32 > size:
                raise ValueError(f"result at {el} is past the end")
            end = el + 32 + from_bytes(data[el : el + 32], "big")
            if end > size:
                raise ValueError(f"result at {el} is truncated")
            append(data[el + 32 : end])
        return block, out
    except ValueError as exc:
        raise ValueError(f"malformed aggregate answer ({len(data)} bytes): {exc}") from None


def _word_at(data: bytes, pos: int) -> int:
    if pos < 0 or pos + 32 > len(data):
        raise ValueError(f"word at byte {pos} is past the end")
    return int.from_bytes(data[pos : pos + 32], "big")


def decode_aggregate3(data: bytes) -> list[tuple[bool, bytes]]:
    """Decode aggregate3's (bool success, bytes returnData)[] result, refusing anything out of bounds."""
    try:
        base = _word_at(data, 0)
        n = _word_at(data, base)
        start = base + 32
        if n > (len(data) - start) // 32:
            raise ValueError(f"claims {n} results")
        out: list[tuple[bool, bytes]] = []
        for i in range(n):
            el = start + _word_at(data, start + 32 * i)
            ok = _word_at(data, el)
            if ok > 1:
                raise ValueError(f"result {i} has a success flag of {ok}")
            boff = el + _word_at(data, el + 32)
            blen = _word_at(data, boff)
            if boff + 32 + blen > len(data):
                raise ValueError(f"result {i} is truncated")
            out.append((ok == 1, bytes(data[boff + 32 : boff + 32 + blen])))
        return out
    except ValueError as exc:
        raise ValueError(f"malformed aggregate3 answer ({len(data)} bytes): {exc}") from None
