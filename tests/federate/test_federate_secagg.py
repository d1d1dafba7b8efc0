"""Secure aggregation (Bonawitz et al. 2017): exact sums under dropouts, aborts, tampering, and what
the coordinator can and cannot learn."""
from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from include.federate.driver import DROP_PHASES, run_local_round
from include.federate.keys import b64decode, b64encode
from include.federate.messages import MessageRejected, SignedMessage, sign_message
from include.federate.secagg import (
    INT64_MAX,
    PRG_SHAKE_256,
    MsgType,
    Phase,
    ClientExcluded,
    ProtocolError,
    RoundAborted,
    RoundConfig,
    SecAggClient,
    SecAggServer,
    default_threshold,
    encode_input,
    prg_words,
    shamir_combine,
    shamir_split,
)


def expected_sum(inputs, parties):
    total = np.zeros_like(next(iter(inputs.values())))
    for p in parties:
        total = total + inputs[p]  # |sum| <= n * bound < 2^63: no wrap in the test either
    return total


# -- primitives ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [16, 32])
def test_shamir_any_t_subset_reconstructs(size):
    secret = bytes(range(size))
    shares = shamir_split(secret, 3, 5)
    assert len(shares) == 5 and all(len(s) == size for s in shares)
    indexed = list(enumerate(shares, start=1))
    for subset in ([0, 1, 2], [4, 2, 0], [1, 3, 4]):
        assert shamir_combine([indexed[i] for i in subset]) == secret
    assert shamir_combine(indexed[:2]) != secret  # t-1 shares do not give it


@pytest.mark.parametrize("prg", ["aes-ctr", "shake-256"])
def test_prg(prg):
    a = prg_words(b"\x01" * 32, 1000, prg)
    assert a.dtype == np.uint64 and a.shape == (1000,)
    assert np.array_equal(a, prg_words(b"\x01" * 32, 1000, prg))
    assert np.array_equal(a[:10], prg_words(b"\x01" * 32, 10, prg))
    assert not np.array_equal(a, prg_words(b"\x02" * 32, 1000, prg))


def test_encode_input_range_checks():
    assert encode_input([1, -1, 5], 3, 5).tolist() == [1, 2**64 - 1, 5]
    assert encode_input(np.array([2**63 - 1], dtype=np.uint64), 1, INT64_MAX).tolist() == [2**63 - 1]
    with pytest.raises(ValueError, match="entry 1 = 6 outside"):
        encode_input(np.array([0, 6, 0]), 3, 5)
    with pytest.raises(ValueError, match="entry 2 = -6 outside"):
        encode_input([0, 0, -6], 3, 5)
    with pytest.raises(ValueError, match="outside"):
        encode_input([2**70], 1, 5)
    with pytest.raises(ValueError, match="outside"):
        encode_input(np.array([2**64 - 1], dtype=np.uint64), 1, 5)
    with pytest.raises(ValueError, match="shape"):
        encode_input([1, 2], 3, 5)
    with pytest.raises(TypeError, match="integers"):
        encode_input([1.0, 2.0, 3.0], 3, 5)
    with pytest.raises(TypeError, match="not an integer"):
        encode_input(np.array([1, True, "x"], dtype=object), 3, 5)


def test_round_config_validation(parties):
    p = parties(20)
    cfg = p.config(input_bound=None)
    assert cfg.threshold == 14 == default_threshold(20) and cfg.max_colluders == 2
    assert cfg.input_bound == INT64_MAX // 20
    assert RoundConfig.from_payload(cfg.to_payload()) == cfg
    for n in range(2, 40):
        assert n / 2 < default_threshold(n) <= n and default_threshold(n) == math.ceil(2 * n / 3)
    with pytest.raises(ValueError, match="threshold"):
        p.config(threshold=10)  # not > n/2
    with pytest.raises(ValueError, match="threshold"):
        p.config(threshold=21)
    with pytest.raises(ValueError, match="input_bound"):
        p.config(input_bound=INT64_MAX // 20 + 1)
    with pytest.raises(ValueError, match="max_colluders"):
        p.config(max_colluders=14)
    with pytest.raises(ValueError, match="prg"):
        p.config(prg="mt19937")
    with pytest.raises(ValueError, match="at least 2"):
        RoundConfig(round_id="r", server_id="coordinator:x", clients=("store:a",), vector_length=3)


# -- exact sums under dropouts -------------------------------------------------------------------

N = 10  # t = 7, floor(n/3) = 3
DROP_CASES = [(0, Phase.MASKED_INPUT)] + [(k, ph) for ph in DROP_PHASES for k in (1, N // 3)]


@pytest.mark.parametrize("n_drop,phase", DROP_CASES, ids=[f"{k}-drop-at-{ph}" for k, ph in DROP_CASES])
def test_exact_sum_with_dropouts(parties, make_inputs, n_drop, phase):
    p = parties(N)
    cfg = p.config(length=3000)
    inputs = make_inputs(cfg, seed=n_drop)
    drops = {c: phase for c in cfg.clients[1 : 1 + n_drop]}  # not always the first: signs differ by order
    run = run_local_round(cfg, p.server, p.stores, inputs, dropouts=drops)
    assert run.aborted is None, run.aborted
    r = run.result
    # inputs of those who dropped before sending their masked input are not in the sum; the others are
    early = DROP_PHASES.index(phase) <= DROP_PHASES.index(Phase.MASKED_INPUT)
    assert set(r.survivors) == (set(cfg.clients) - set(drops) if early else set(cfg.clients))
    assert r.total.dtype == np.int64
    assert np.array_equal(r.total, expected_sum(inputs, r.survivors))
    if phase == Phase.MASKED_INPUT:
        assert set(r.dropped) == set(drops)  # their dangling pairwise masks were removed
    if phase in (Phase.ADVERTISE_KEYS, Phase.SHARE_KEYS):
        assert set(r.not_joined) == set(drops)
    assert run.server.phase == Phase.DONE
    assert all(c.phase == Phase.DONE for c in run.clients.values() if c.party_id not in drops)
    assert run.included == {c: True for c in cfg.clients if c not in drops}


def test_twenty_stores_five_thousand_entries_with_a_third_dropping(parties, make_inputs):
    p = parties(20)
    cfg = p.config(length=5000, input_bound=2**58)
    inputs = make_inputs(cfg, seed=7)
    drops = {c: Phase.MASKED_INPUT for c in cfg.clients[::3]}  # 7 of 20 drop -> 13 < t = 14: abort
    run = run_local_round(cfg, p.server, p.stores, inputs, dropouts=drops)
    assert run.result is None and run.aborted is not None
    drops = {c: Phase.MASKED_INPUT for c in cfg.clients[::4]}  # 5 drop after sharing keys, 15 >= 14
    drops[cfg.clients[1]] = Phase.UNMASKING  # and one more during unmasking (its input still counts)
    run = run_local_round(cfg, p.server, p.stores, inputs, dropouts=drops)
    assert run.aborted is None
    assert len(run.result.survivors) == 15
    assert np.array_equal(run.result.total, expected_sum(inputs, run.result.survivors))


def test_shake_prg_and_extreme_values(parties):
    p = parties(4)
    cfg = p.config(length=50, input_bound=INT64_MAX // 4, prg=PRG_SHAKE_256)
    b = cfg.input_bound
    inputs = {c: np.full(50, b if i % 2 == 0 else -b, dtype=np.int64) for i, c in enumerate(cfg.clients)}
    inputs[cfg.clients[0]][:5] = b  # sum of the first entries: 2b - 2b + ... handled exactly
    run = run_local_round(cfg, p.server, p.stores, inputs)
    assert np.array_equal(run.result.total, expected_sum(inputs, cfg.clients))
    cfg = p.config(length=4, input_bound=INT64_MAX // 4)
    inputs = {c: np.full(4, cfg.input_bound, dtype=np.int64) for c in cfg.clients}
    run = run_local_round(cfg, p.server, p.stores, inputs)
    assert run.result.to_list() == [4 * cfg.input_bound] * 4  # the largest sum: no wrap


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_dropout_schedule_gives_exact_sum_or_clean_abort(parties, data):
    n = data.draw(st.integers(3, 7), label="n")
    p = parties(n)
    t = data.draw(st.integers(n // 2 + 1, n), label="t")
    length = data.draw(st.integers(1, 40), label="length")
    cfg = p.config(length=length, threshold=t, input_bound=1000)
    inputs = {c: np.array(data.draw(st.lists(st.integers(-1000, 1000), min_size=length, max_size=length)),
                          dtype=np.int64) for c in cfg.clients}
    drops = {c: ph for c in cfg.clients
             if (ph := data.draw(st.sampled_from((None, *DROP_PHASES)), label=f"drop {c}")) is not None}
    run = run_local_round(cfg, p.server, p.stores, inputs, dropouts=drops)
    alive = [sum(1 for c in cfg.clients if c not in drops or DROP_PHASES.index(drops[c]) > i)
             for i in range(len(DROP_PHASES))]
    if min(alive) < t:
        assert run.result is None and run.aborted is not None
        assert run.server.phase == Phase.ABORTED and run.server.result is None
    else:
        sent_input = [c for c in cfg.clients
                      if c not in drops or DROP_PHASES.index(drops[c]) > DROP_PHASES.index(Phase.MASKED_INPUT)]
        assert list(run.result.survivors) == sent_input
        assert np.array_equal(run.result.total, expected_sum(inputs, sent_input))


# -- abort below t ------------------------------------------------------------------------------


@pytest.mark.parametrize("phase", DROP_PHASES)
def test_abort_below_threshold_at_each_phase(parties, make_inputs, phase):
    p = parties(N)
    cfg = p.config(length=100)
    drops = {c: phase for c in cfg.clients[: N - cfg.threshold + 1]}  # t - 1 remain
    run = run_local_round(cfg, p.server, p.stores, make_inputs(cfg), dropouts=drops)
    assert run.result is None and run.server.result is None
    assert isinstance(run.aborted, RoundAborted) and run.aborted.phase == phase
    assert f"threshold {cfg.threshold}" in run.aborted.reason
    assert run.server.phase == Phase.ABORTED and run.server._masked == {}
    abort = SignedMessage.from_json(run.wire[-1])
    assert abort.msg_type == MsgType.ROUND_ABORT and abort.payload["phase"] == phase
    for c in run.clients.values():
        assert c.phase in (Phase.ABORTED, Phase.DONE) and c._b is None and c._held == {}
    with pytest.raises(ProtocolError):
        run.server.result_message()


def test_client_aborts_on_a_keys_broadcast_below_threshold(parties):
    p = parties(6)
    cfg = p.config(length=4)
    server = SecAggServer(cfg, p.server, p.registry)
    clients = {c: SecAggClient(p.stores[c], p.registry, server.round_setup(), coordinator_id=cfg.server_id)
               for c in cfg.clients}
    ads = [clients[c].advertise_keys() for c in cfg.clients]
    short = sign_message(p.server, round_id=cfg.round_id, phase=Phase.SHARE_KEYS, msg_type=MsgType.KEYS_BROADCAST,
                         payload={"advertisements": [a.to_dict() for a in ads[: cfg.threshold - 1]]})
    with pytest.raises(RoundAborted, match="threshold"):
        clients[cfg.clients[0]].share_keys(short)
    assert clients[cfg.clients[0]].phase == Phase.ABORTED


# -- a step-by-step round, for the adversarial tests ----------------------------------------------


class Stepper:
    """Drives one round phase by phase through the wire form, keeping every message."""

    def __init__(self, p, cfg, inputs):
        self.p, self.cfg, self.inputs = p, cfg, inputs
        self.server = SecAggServer(cfg, p.server, p.registry)
        setup = self.server.round_setup().to_json()
        self.clients = {c: SecAggClient(p.stores[c], p.registry, setup, coordinator_id=cfg.server_id)
                        for c in cfg.clients}
        self.sent: dict[str, dict[str, str]] = {}

    def _collect(self, phase, parties, fn):
        self.sent[phase] = {}
        for c in parties:
            text = fn(self.clients[c]).to_json()
            self.sent[phase][c] = text
            assert self.server.receive(text) is True

    def advertise(self, parties=None):
        self._collect(Phase.ADVERTISE_KEYS, parties or self.cfg.clients, lambda c: c.advertise_keys())
        self.keys = self.server.close_advertise_keys().to_json()

    def share(self, parties=None):
        self._collect(Phase.SHARE_KEYS, parties or self.server.u1, lambda c: c.share_keys(self.keys))
        self.forwards = {v: m.to_json() for v, m in self.server.close_share_keys().items()}

    def mask(self, parties=None):
        self._collect(Phase.MASKED_INPUT, parties or self.server.u2,
                      lambda c: c.masked_input(self.forwards[c.party_id], self.inputs[c.party_id]))
        self.survivors = self.server.close_masked_input().to_json()

    def consistency(self, parties=None):
        self._collect(Phase.CONSISTENCY_CHECK, parties or self.server.u3, lambda c: c.consistency_check(self.survivors))
        self.request = self.server.close_consistency_check().to_json()

    def unmask(self, parties=None):
        self._collect(Phase.UNMASKING, parties or self.server.u4, lambda c: c.unmask(self.request))
        return self.server.close_unmasking()


def _resign(p, text, **changes):
    """A message as a malicious coordinator would re-sign it (it holds its own key)."""
    m = SignedMessage.from_json(text)
    payload = {**m.payload, **changes}
    return sign_message(p.server, round_id=m.round_id, phase=m.phase, msg_type=m.msg_type, payload=payload,
                        recipient=m.recipient)


def test_tampered_client_messages_are_rejected_by_the_server(parties, make_inputs):
    p = parties(5)
    cfg = p.config(length=200)
    s = Stepper(p, cfg, make_inputs(cfg))
    s.advertise()
    s.share()
    a, b = cfg.clients[:2]
    y = s.clients[a].masked_input(s.forwards[a], s.inputs[a])
    d = y.to_dict()
    raw = bytearray(b64decode(d["payload"]["masked"], field="masked"))
    raw[0] ^= 1  # one bit of the masked vector flipped in transit
    d["payload"] = {**d["payload"], "masked": b64encode(bytes(raw))}
    err = pytest.raises(MessageRejected, s.server.receive, json.dumps(d)).value
    assert err.code == "bad_signature" and err.sender == a
    assert s.server.receive(y.to_json()) is True  # the genuine one is accepted
    assert s.server.receive(y.to_json()) is False  # a redelivery is recognised, not counted twice
    # the same sender trying to replace its input
    other = s.clients[a].to_state()
    assert other["phase"] == Phase.CONSISTENCY_CHECK
    forged = sign_message(p.stores[a], round_id=cfg.round_id, phase=Phase.MASKED_INPUT, msg_type=MsgType.MASKED_INPUT,
                          payload={**y.payload, "masked": b64encode(bytes(8 * 200))}, recipient=cfg.server_id)
    assert pytest.raises(MessageRejected, s.server.receive, forged).value.code == "replay"
    # unsigned
    d = s.clients[b].masked_input(s.forwards[b], s.inputs[b]).to_dict()
    del d["signature"]
    assert pytest.raises(MessageRejected, s.server.receive, d).value.code == "unsigned"
    # a message of an earlier phase replayed now
    assert pytest.raises(MessageRejected, s.server.receive, s.sent[Phase.SHARE_KEYS][b]).value.code == "wrong_phase"
    # a message of this phase from another round
    s2 = Stepper(p, p.config(length=200), s.inputs)
    s2.advertise()
    assert pytest.raises(MessageRejected, s.server.receive, s2.sent[Phase.ADVERTISE_KEYS][b]).value.code == "wrong_round"
    # wrong vector length, properly signed
    bad = sign_message(p.stores[b], round_id=cfg.round_id, phase=Phase.MASKED_INPUT, msg_type=MsgType.MASKED_INPUT,
                       payload={"vector_length": 199, "masked": b64encode(bytes(8 * 199))}, recipient=cfg.server_id)
    assert pytest.raises(MessageRejected, s.server.receive, bad).value.code == "invalid_payload"


def test_tampered_coordinator_messages_are_rejected_by_clients(parties, make_inputs):
    p = parties(5)
    cfg = p.config(length=50)
    s = Stepper(p, cfg, make_inputs(cfg))
    s.advertise()
    s.share()
    a = cfg.clients[0]
    # a relayed share ciphertext altered in transit (envelope not re-signed)
    d = json.loads(s.forwards[a])
    u = next(iter(d["payload"]["ciphertexts"]))
    blob = bytearray(b64decode(d["payload"]["ciphertexts"][u], field="ct"))
    blob[-1] ^= 1
    d["payload"]["ciphertexts"][u] = b64encode(bytes(blob))
    assert pytest.raises(MessageRejected, s.clients[a].masked_input, json.dumps(d), s.inputs[a]).value.code == "bad_signature"
    assert s.clients[a].phase == Phase.MASKED_INPUT  # an unverifiable message changes nothing
    # the same alteration by the coordinator itself (re-signed): AES-GCM catches it, the client aborts
    forged = _resign(p, s.forwards[a], ciphertexts=d["payload"]["ciphertexts"])
    err = pytest.raises(MessageRejected, s.clients[a].masked_input, forged, s.inputs[a]).value
    assert err.code == "invalid_payload" and "do not decrypt" in str(err)
    assert s.clients[a].phase == Phase.ABORTED
    # a forwarded message meant for another client
    b = cfg.clients[1]
    assert pytest.raises(MessageRejected, s.clients[b].masked_input, s.forwards[cfg.clients[2]],
                         s.inputs[b]).value.code == "wrong_recipient"


def test_coordinator_never_holds_both_shares_of_one_store(parties, make_inputs):
    """Following the protocol, the coordinator receives, per store, shares of b_u *or* of s_u^SK,
    never both; it never sees any share in the clear before unmasking; and it never holds the
    self-mask seed or mask key of a survivor."""
    p = parties(12)  # t = 8: 12 -> 10 survivors -> 9 signers -> 8 unmaskers
    cfg = p.config(length=300)
    s = Stepper(p, cfg, make_inputs(cfg))
    s.advertise()
    s.share()
    dropped = list(cfg.clients[:2])
    s.mask([c for c in s.server.u2 if c not in dropped])
    secrets_of = {c: s.clients[c].to_state() for c in cfg.clients}  # before unmasking wipes them
    s.consistency(s.server.u3[:-1])  # one survivor silent at the consistency check
    result = s.unmask(s.server.u4[1:])  # and one more during unmasking
    survivors = set(result.survivors)
    assert set(result.dropped) == set(dropped)
    b_shares, sk_shares = Counter(), Counter()
    for m in s.server.received[Phase.UNMASKING].values():
        b_shares.update(list(m.payload["b_shares"]))
        sk_shares.update(list(m.payload["sk_shares"]))
    assert set(b_shares) == survivors and set(sk_shares) == set(dropped)
    assert not set(b_shares) & set(sk_shares)
    assert all(k >= cfg.threshold for k in b_shares.values())  # enough to remove self-masks ...
    assert all(sk_shares[c] == 0 for c in survivors)  # ... but never a single share of their mask keys
    # nothing the coordinator stores contains a store's secrets or a share in the clear, except the
    # shares revealed at unmasking (b of survivors, s^SK of dropped stores)
    server_state = json.dumps(s.server.to_state())
    for c, st_ in secrets_of.items():
        assert st_["b"] not in server_state and st_["c_sk"] not in server_state
        if c in survivors:
            assert st_["s_sk"] not in server_state
            for held in secrets_of.values():
                if c in held["held"]:
                    assert held["held"][c][1] not in server_state  # no share of a survivor's s^SK
    # a share held by one store about another never reached the coordinator before unmasking
    before = json.dumps({ph: {k: m.to_dict() for k, m in got.items()}
                         for ph, got in s.server.received.items() if ph != Phase.UNMASKING})
    for st_ in secrets_of.values():
        for bs, sks in st_["held"].values():
            assert bs not in before and sks not in before


def test_equivocating_coordinator_cannot_get_both_shares(parties, make_inputs):
    """A coordinator that claims a store dropped (to get its s^SK shares) after announcing it as a
    survivor, or that shows different survivor sets to different stores, gets nothing."""
    p = parties(7)
    cfg = p.config(length=40)
    s = Stepper(p, cfg, make_inputs(cfg))
    s.advertise()
    s.share()
    s.mask()
    s.consistency()
    victim, honest = cfg.clients[0], cfg.clients[1]
    req = SignedMessage.from_json(s.request)
    # 1. the victim listed as dropped while the others signed it as a survivor
    forged = _resign(p, s.request, survivors=[c for c in req.payload["survivors"] if c != victim], dropped=[victim])
    err = pytest.raises(MessageRejected, s.clients[honest].unmask, forged).value
    assert err.code == "invalid_payload" and s.clients[honest].phase == Phase.ABORTED
    # 2. too few consistency signatures
    other = cfg.clients[2]
    forged = _resign(p, s.request, signatures=req.payload["signatures"][: cfg.threshold - 1])
    assert "consistency signatures" in str(pytest.raises(MessageRejected, s.clients[other].unmask, forged).value)
    # 3. a signature on a different survivor set (the coordinator showed another U3 to someone)
    third = cfg.clients[3]
    alt = sign_message(p.stores[cfg.clients[4]], round_id=cfg.round_id, phase=Phase.CONSISTENCY_CHECK,
                       msg_type=MsgType.CONSISTENCY_CHECK, payload={"survivors": list(cfg.clients[1:])},
                       recipient=cfg.server_id)
    sigs = [alt.to_dict() if m["sender"] == cfg.clients[4] else m for m in req.payload["signatures"]]
    err = pytest.raises(MessageRejected, s.clients[third].unmask, _resign(p, s.request, signatures=sigs)).value
    assert "different survivor set" in str(err)
    # 4. an honest request is answered once; a second, different request gets nothing
    fourth = cfg.clients[4]
    first = s.clients[fourth].unmask(s.request)
    assert s.clients[fourth].unmask(s.request) == first  # redelivery: same answer
    again = _resign(p, s.request, dropped=[victim])
    assert pytest.raises(MessageRejected, s.clients[fourth].unmask, again).value.code in ("replay", "wrong_phase")
    assert set(first.payload["sk_shares"]) == set()


def test_late_stores_are_refused_and_told_they_are_excluded(parties, make_inputs):
    p = parties(12)  # t = 8: 11 advertise, 10 send inputs, 8 sign
    cfg = p.config(length=30)
    s = Stepper(p, cfg, make_inputs(cfg))
    late_ad, late_y, late_sig, silent = cfg.clients[-1], cfg.clients[-2], cfg.clients[-3], cfg.clients[-4]
    s.advertise([c for c in cfg.clients if c != late_ad])
    ad = s.clients[late_ad].advertise_keys()
    assert pytest.raises(MessageRejected, s.server.receive, ad).value.code == "wrong_phase"
    with pytest.raises(ClientExcluded):
        s.clients[late_ad].share_keys(s.keys)
    assert s.clients[late_ad].phase == Phase.EXCLUDED
    s.share()
    s.mask([c for c in s.server.u2 if c != late_y])
    y = s.clients[late_y].masked_input(s.forwards[late_y], s.inputs[late_y])
    assert pytest.raises(MessageRejected, s.server.receive, y).value.code == "wrong_phase"
    with pytest.raises(ClientExcluded):
        s.clients[late_y].consistency_check(s.survivors)
    s.consistency([c for c in s.server.u3 if c not in (late_sig, silent)])
    sig = s.clients[late_sig].consistency_check(s.survivors)
    assert pytest.raises(MessageRejected, s.server.receive, sig).value.code == "wrong_phase"
    # it signed the same U3, so answering is safe; the coordinator does not expect it
    late_answer = s.clients[late_sig].unmask(s.request)
    assert pytest.raises(MessageRejected, s.server.receive, late_answer).value.code == "wrong_sender"
    with pytest.raises(ClientExcluded):
        s.clients[silent].unmask(s.request)  # never signed U3: reveals nothing
    assert s.clients[silent].phase == Phase.EXCLUDED and s.clients[silent]._held == {}
    result = s.unmask()
    assert late_y in result.dropped and late_ad in result.not_joined and late_sig in result.survivors
    assert np.array_equal(result.total, expected_sum(s.inputs, result.survivors))
    outcome = s.server.result_message().to_json()
    assert s.clients[late_sig].handle_result(outcome) is True  # its input is in the sum: charge budget
    assert s.clients[late_y].handle_result(outcome) is False


def _chi2_bytes(data: bytes) -> float:
    counts = np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256)
    e = len(data) / 256
    return float(((counts - e) ** 2 / e).sum())


def test_masked_input_looks_uniform_and_unrelated_to_the_input(parties):
    p = parties(4)
    cfg = p.config(length=5000, input_bound=2**20)
    structured = {c: np.zeros(5000, dtype=np.int64) for c in cfg.clients}
    a = cfg.clients[0]
    structured[a] = (np.arange(5000, dtype=np.int64) % 7) * 1000  # very non-random input
    masked = []
    for _ in range(2):
        s = Stepper(p, p.config(length=5000, input_bound=2**20), structured)
        s.advertise()
        s.share()
        s.mask()
        masked.append(b64decode(SignedMessage.from_json(s.sent[Phase.MASKED_INPUT][a]).payload["masked"], field="y"))
    y = np.frombuffer(masked[0], dtype="<u8")
    # byte histogram: chi-square with 255 degrees of freedom (mean 255, sd 22.6); 400 is > 6 sd
    assert _chi2_bytes(masked[0]) < 400 and _chi2_bytes(masked[1]) < 400
    # every bit position balanced (expected 2500, sd 35)
    bits = np.unpackbits(np.frombuffer(y.astype("<u8").tobytes(), dtype=np.uint8)).reshape(-1, 64)
    assert np.all(np.abs(bits.sum(axis=0, dtype=np.int64) - 2500) < 250)
    # no correlation with the input, and fresh masks each round for the same input
    x = structured[a].astype(float)
    assert abs(np.corrcoef(x, (y >> np.uint64(11)).astype(float))[0, 1]) < 0.1
    assert masked[0] != masked[1]
    y2 = np.frombuffer(masked[1], dtype="<u8")
    assert np.count_nonzero(y == y2) < 5


def test_state_round_trips_through_json_mid_round(parties, make_inputs):
    """The Airflow tasks of one round run in separate processes: state must survive JSON."""
    p = parties(5)
    cfg = p.config(length=100)
    inputs = make_inputs(cfg)
    s = Stepper(p, cfg, inputs)

    def reload():
        s.server = SecAggServer.from_state(json.loads(json.dumps(s.server.to_state())), p.server, p.registry)
        s.clients = {c: SecAggClient.from_state(json.loads(json.dumps(cl.to_state())), p.stores[c], p.registry)
                     for c, cl in s.clients.items()}

    s.advertise()
    reload()
    s.share()
    reload()
    s.mask()
    reload()
    # redelivery after a restart: the same answer, not a new one
    c0 = cfg.clients[0]
    assert s.clients[c0].masked_input(s.forwards[c0], inputs[c0]).to_json() == s.sent[Phase.MASKED_INPUT][c0]
    s.consistency()
    reload()
    result = s.unmask()
    assert np.array_equal(result.total, expected_sum(inputs, cfg.clients))
    again = SecAggServer.from_state(json.loads(json.dumps(s.server.to_state())), p.server, p.registry)
    assert np.array_equal(again.result.total, result.total) and again.phase == Phase.DONE
    assert again.result_message().payload["survivors"] == list(cfg.clients)


def test_client_input_is_range_checked_before_anything_is_sent(parties):
    p = parties(3)
    cfg = p.config(length=3, input_bound=10)
    s = Stepper(p, cfg, {c: np.zeros(3, dtype=np.int64) for c in cfg.clients})
    s.advertise()
    s.share()
    a = cfg.clients[0]
    with pytest.raises(ValueError, match="outside"):
        s.clients[a].masked_input(s.forwards[a], [0, 11, 0])
    assert s.clients[a].phase == Phase.MASKED_INPUT  # it can still send a valid vector
    s.clients[a].masked_input(s.forwards[a], [0, 10, 0])


def test_setup_from_an_unexpected_party_is_refused(parties):
    p = parties(3)
    cfg = p.config(length=3)
    server = SecAggServer(cfg, p.server, p.registry)
    a, b = cfg.clients[:2]
    with pytest.raises(MessageRejected) as info:
        SecAggClient(p.stores[a], p.registry, server.round_setup(), coordinator_id="coordinator:other")
    assert info.value.code == "wrong_sender"
    fake = sign_message(p.stores[b], round_id=cfg.round_id, phase=Phase.SETUP, msg_type=MsgType.ROUND_SETUP,
                        payload=cfg.to_payload())
    with pytest.raises(MessageRejected):
        SecAggClient(p.stores[a], p.registry, fake, coordinator_id=b)  # config names another server


def test_generic_transport_loop_with_pending_and_timeout_abort(parties, make_inputs):
    """The shape of the Kafka loop: receive until nobody is pending, then close_phase(); a round-level
    timeout aborts with a signed round_abort that the stores accept."""
    p = parties(4)
    cfg = p.config(length=10)
    inputs = make_inputs(cfg)
    server = SecAggServer(cfg, p.server, p.registry)
    clients = {c: SecAggClient(p.stores[c], p.registry, server.round_setup(), coordinator_id=cfg.server_id)
               for c in cfg.clients}
    assert server.pending() == list(cfg.clients)
    for c in cfg.clients:
        server.receive(clients[c].advertise_keys())
    assert server.pending() == []
    keys = server.close_phase()
    for c in cfg.clients:
        server.receive(clients[c].share_keys(keys))
    forwards = server.close_phase()
    assert set(forwards) == set(cfg.clients)
    server.receive(clients[cfg.clients[0]].masked_input(forwards[cfg.clients[0]], inputs[cfg.clients[0]]))
    assert server.pending() == list(cfg.clients[1:])
    abort = server.abort("phase masked_input timed out").to_json()
    assert server.phase == Phase.ABORTED and server.result is None
    with pytest.raises(ProtocolError):
        server.close_phase()
    for c in cfg.clients:
        assert clients[c].handle_abort(abort) == "phase masked_input timed out"
        assert clients[c].phase == Phase.ABORTED and clients[c]._b is None
    with pytest.raises(MessageRejected) as info:
        server.receive(clients[cfg.clients[1]]._answers[Phase.SHARE_KEYS][1])
    assert info.value.code == "wrong_phase"
