"""The hand-written aggregate3 codec agrees with eth_abi, and rejects malformed answers."""

import random

import pytest
from eth_abi import decode, encode

from watcher.abi import (
    MULTICALL3,
    Contract,
    decode_aggregate,
    decode_aggregate3,
    encode_aggregate,
    encode_aggregate3,
    encoded_size,
)


def test_encode_aggregate3_matches_eth_abi() -> None:
    rng = random.Random(7)
    calls = [("0x" + rng.randbytes(20).hex(), rng.randbytes(rng.randrange(0, 100))) for _ in range(50)]
    ours = encode_aggregate3(calls)
    ref = MULTICALL3.aggregate3.selector + encode(["(address,bool,bytes)[]"], [[(t, True, d) for t, d in calls]])
    assert ours == ref


def test_decode_aggregate3_matches_eth_abi() -> None:
    rng = random.Random(8)
    results = [(rng.random() < 0.8, rng.randbytes(rng.randrange(0, 200))) for _ in range(40)]
    data = encode(["(bool,bytes)[]"], [results])
    assert decode_aggregate3(data) == results
    assert decode(["(bool,bytes)[]"], data)[0] == tuple(results)


@pytest.mark.parametrize("bad", [b"", b"\x00" * 31, encode(["(bool,bytes)[]"], [[(True, b"abc")]])[:-40]])
def test_decode_aggregate3_rejects_malformed(bad: bytes) -> None:
    with pytest.raises(ValueError, match="malformed aggregate3"):
        decode_aggregate3(bad)


def test_fast_encode_matches_eth_abi() -> None:
    pool = Contract("IPool")
    user = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    assert pool.getUserConfiguration.encode(user) == pool.getUserConfiguration.selector + encode(["address"], [user])
    assert pool.getEModeCategoryData.encode(3) == pool.getEModeCategoryData.selector + encode(["uint8"], [3])
    # selector of getUserAccountData(address), as published in Aave's IPool
    assert pool.getUserAccountData.selector.hex() == "bf92857c"


def test_encode_aggregate_matches_eth_abi() -> None:
    rng = random.Random(9)
    calls = [("0x" + rng.randbytes(20).hex(), rng.randbytes(rng.randrange(0, 100))) for _ in range(50)]
    ref = MULTICALL3.aggregate.selector + encode(["(address,bytes)[]"], [calls])
    assert encode_aggregate(calls) == ref
    assert len(ref) == 4 + 64 + sum(encoded_size(d) for _, d in calls)


def test_decode_aggregate_matches_eth_abi() -> None:
    rng = random.Random(10)
    datas = [rng.randbytes(rng.randrange(0, 200)) for _ in range(40)]
    assert decode_aggregate(encode(["uint256", "bytes[]"], [1234, datas])) == (1234, datas)
    with pytest.raises(ValueError, match="malformed aggregate"):
        decode_aggregate(encode(["uint256", "bytes[]"], [1, datas])[:-50])
