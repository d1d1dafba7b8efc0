"""Secure aggregation after Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving
Machine Learning" (CCS 2017), the variant with signatures and the consistency check.

The coordinator (server) learns the exact sum, mod 2^64, of the int64 vectors of the surviving store
clients and nothing else about any one of them; see ``docs/federate.md`` for the protocol, the threat
model and what the transport layer must do.

Two state machines, driven message by message by a transport (Kafka, or :mod:`include.federate.driver`
in process):

* :class:`SecAggServer`: ``round_setup()``, then per phase ``receive(msg)`` for each arriving message
  and ``close_<phase>()`` when everyone expected has answered or the phase timed out.
* :class:`SecAggClient`: one method per phase, each taking the coordinator's message of that phase and
  returning the client's signed answer.

Phases and messages (``type``; ``->`` client to server, ``<-`` server to clients)::

    setup              <- round_setup       (RoundConfig, signed by the coordinator)
    advertise_keys     -> advertise_keys    (X25519 c_pk, s_pk)
    share_keys         <- keys_broadcast    (all signed advertisements = U1)
                       -> share_keys        (AES-GCM ciphertexts of Shamir shares of b_u and s_u^SK per peer)
    masked_input       <- shares_forward    (per recipient: the ciphertexts addressed to it = U2)
                       -> masked_input      (y_u = x_u + PRG(b_u) + sum_v<u PRG(s_uv) - sum_v>u PRG(s_uv) mod 2^64)
    consistency_check  <- survivor_set      (U3 = who sent a masked input)
                       -> consistency_check (signature on U3)
    unmasking          <- unmask_request    (U3, dropped U2\\U3, >= t signatures on U3 = U4)
                       -> unmask_response   (shares of b_v for v in U3, of s_v^SK for v in U2\\U3)
    done / aborted     <- round_result / round_abort

The round aborts (no output) as soon as fewer than ``threshold`` parties remain at any phase.
Randomness: ``secrets`` (keys, seeds, nonces) and pycryptodome's ``get_random_bytes`` inside
``Shamir.split``; masks come from AES-256-CTR (default) or SHAKE-256. No numpy randomness: numpy is
used for the wrap-around uint64 vector arithmetic only.
"""
from __future__ import annotations

import hashlib
import itertools
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from Crypto.Protocol.SecretSharing import Shamir
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from include.federate.keys import KeyRegistry, PartyIdentity, b64decode, b64encode, check_party_id
from include.federate.messages import MessageRejected, SignedMessage, check_round_id, sign_message, verify_message

# --------------------------------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------------------------------

PRG_AES_CTR = "aes-ctr"
PRG_SHAKE_256 = "shake-256"
PRGS = (PRG_AES_CTR, PRG_SHAKE_256)
MODULUS_BITS = 64
INT64_MAX = 2**63 - 1
#: largest vector accepted (one masked message of 10^7 entries is ~107 MB of JSON: chunk before that).
MAX_VECTOR_LENGTH = 10_000_000


class Phase:
    """Phase names (also the ``phase`` field of the messages)."""

    SETUP = "setup"
    ADVERTISE_KEYS = "advertise_keys"
    SHARE_KEYS = "share_keys"
    MASKED_INPUT = "masked_input"
    CONSISTENCY_CHECK = "consistency_check"
    UNMASKING = "unmasking"
    DONE = "done"
    ABORTED = "aborted"
    #: client only: the coordinator went on without this client (it answered too late)
    EXCLUDED = "excluded"

    ORDER = (SETUP, ADVERTISE_KEYS, SHARE_KEYS, MASKED_INPUT, CONSISTENCY_CHECK, UNMASKING, DONE)


class MsgType:
    """Message types (the ``type`` field)."""

    ROUND_SETUP = "round_setup"
    ADVERTISE_KEYS = "advertise_keys"
    KEYS_BROADCAST = "keys_broadcast"
    SHARE_KEYS = "share_keys"
    SHARES_FORWARD = "shares_forward"
    MASKED_INPUT = "masked_input"
    SURVIVOR_SET = "survivor_set"
    CONSISTENCY_CHECK = "consistency_check"
    UNMASK_REQUEST = "unmask_request"
    UNMASK_RESPONSE = "unmask_response"
    ROUND_RESULT = "round_result"
    ROUND_ABORT = "round_abort"


#: the phase label carried by each message type
PHASE_OF: dict[str, str] = {
    MsgType.ROUND_SETUP: Phase.SETUP,
    MsgType.ADVERTISE_KEYS: Phase.ADVERTISE_KEYS,
    MsgType.KEYS_BROADCAST: Phase.SHARE_KEYS,
    MsgType.SHARE_KEYS: Phase.SHARE_KEYS,
    MsgType.SHARES_FORWARD: Phase.MASKED_INPUT,
    MsgType.MASKED_INPUT: Phase.MASKED_INPUT,
    MsgType.SURVIVOR_SET: Phase.CONSISTENCY_CHECK,
    MsgType.CONSISTENCY_CHECK: Phase.CONSISTENCY_CHECK,
    MsgType.UNMASK_REQUEST: Phase.UNMASKING,
    MsgType.UNMASK_RESPONSE: Phase.UNMASKING,
    MsgType.ROUND_RESULT: Phase.DONE,
    MsgType.ROUND_ABORT: Phase.ABORTED,
}
#: client message type the server collects in each of its phases
CLIENT_MESSAGE_OF_PHASE: dict[str, str] = {
    Phase.ADVERTISE_KEYS: MsgType.ADVERTISE_KEYS,
    Phase.SHARE_KEYS: MsgType.SHARE_KEYS,
    Phase.MASKED_INPUT: MsgType.MASKED_INPUT,
    Phase.CONSISTENCY_CHECK: MsgType.CONSISTENCY_CHECK,
    Phase.UNMASKING: MsgType.UNMASK_RESPONSE,
}


class ProtocolError(RuntimeError):
    """The protocol cannot go on for this party (inconsistent data, failed decryption, bad share)."""


class RoundAborted(ProtocolError):
    """The round ended without output: fewer than ``threshold`` parties left, or an integrity failure."""

    def __init__(self, phase: str, reason: str) -> None:
        self.phase = phase
        self.reason = reason
        super().__init__(f"secure aggregation aborted in phase {phase}: {reason}")


class ClientExcluded(ProtocolError):
    """The coordinator closed a phase without this client (its answer was late or missing).

    Not an error of anyone: the client stops here. Whether its input is in the sum is told by the
    ``survivors`` of the ``round_result`` (see :meth:`SecAggClient.handle_result`).
    """

    def __init__(self, phase: str, reason: str) -> None:
        self.phase = phase
        self.reason = reason
        super().__init__(f"client excluded in phase {phase}: {reason}")


def default_threshold(n_clients: int) -> int:
    """Bonawitz's recommendation t = ceil(2n/3) (tolerates up to a third of dropouts)."""
    return -(-2 * n_clients // 3)


# --------------------------------------------------------------------------------------------------
# round configuration
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundConfig:
    """Parameters of one secure aggregation (one vector sum), announced signed in ``round_setup``.

    ``round_id`` must be unique per aggregation (e.g. ``<federated round uuid>/level-2``): it salts
    every derived key. ``clients`` are the invited store ids (sorted here; a client's Shamir index
    is its 1-based position). ``threshold`` t defaults to ceil(2n/3) and must exceed n/2.
    ``input_bound`` B bounds every input entry (|x_i| <= B); n*B must fit in int64 so the sum
    cannot wrap; it defaults to the largest such B. ``max_colluders`` c (clients that may collude
    with the coordinator, default floor(n/10), must be < t) is informational here: the noise
    shares are calibrated for t - c honest survivors by the privacy package.
    """

    round_id: str
    server_id: str
    clients: tuple[str, ...]
    vector_length: int
    threshold: int | None = None
    input_bound: int | None = None
    max_colluders: int | None = None
    prg: str = PRG_AES_CTR

    def __post_init__(self) -> None:
        check_round_id(self.round_id)
        check_party_id(self.server_id, field="server_id")
        clients = tuple(sorted(check_party_id(c, field="clients[]") for c in self.clients))
        if len(set(clients)) != len(clients):
            raise ValueError("clients: duplicate client ids")
        n = len(clients)
        if n < 2:
            raise ValueError(f"clients: secure aggregation needs at least 2 clients, got {n}")
        if self.server_id in clients:
            raise ValueError("server_id: the coordinator cannot also be a client")
        object.__setattr__(self, "clients", clients)
        t = default_threshold(n) if self.threshold is None else self.threshold
        if not isinstance(t, int) or isinstance(t, bool) or not (n // 2 + 1 <= t <= n) or t < 2:
            raise ValueError(f"threshold: must be an integer with n/2 < t <= n (n={n}), got {t!r}")
        object.__setattr__(self, "threshold", t)
        m = self.vector_length
        if not isinstance(m, int) or isinstance(m, bool) or not (1 <= m <= MAX_VECTOR_LENGTH):
            raise ValueError(f"vector_length: must be an integer in [1, {MAX_VECTOR_LENGTH}], got {m!r}")
        bound = INT64_MAX // n if self.input_bound is None else self.input_bound
        if not isinstance(bound, int) or isinstance(bound, bool) or bound < 1 or n * bound > INT64_MAX:
            raise ValueError(
                f"input_bound: must be an integer >= 1 with n*input_bound <= 2^63-1 "
                f"(n={n}, max {INT64_MAX // n}), got {bound!r}"
            )
        object.__setattr__(self, "input_bound", bound)
        c = n // 10 if self.max_colluders is None else self.max_colluders
        if not isinstance(c, int) or isinstance(c, bool) or not (0 <= c < t):
            raise ValueError(f"max_colluders: must be an integer with 0 <= c < threshold ({t}), got {c!r}")
        object.__setattr__(self, "max_colluders", c)
        if self.prg not in PRGS:
            raise ValueError(f"prg: must be one of {PRGS}, got {self.prg!r}")

    @property
    def n_clients(self) -> int:
        return len(self.clients)

    def share_index(self, party_id: str) -> int:
        """The Shamir x-coordinate of ``party_id`` (1-based position among the invited clients)."""
        try:
            return self.clients.index(party_id) + 1
        except ValueError:
            raise ProtocolError(f"{party_id!r} is not a client of round {self.round_id!r}") from None

    def to_payload(self) -> dict[str, Any]:
        return {
            "round_id": self.round_id,
            "server_id": self.server_id,
            "clients": list(self.clients),
            "vector_length": self.vector_length,
            "threshold": self.threshold,
            "input_bound": self.input_bound,
            "max_colluders": self.max_colluders,
            "prg": self.prg,
            "modulus_bits": MODULUS_BITS,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> RoundConfig:
        keys = {"round_id", "server_id", "clients", "vector_length", "threshold", "input_bound", "max_colluders",
                "prg", "modulus_bits"}
        if set(payload) != keys:
            raise ValueError(f"round_setup payload: expected fields {sorted(keys)}, got {sorted(payload)}")
        if payload["modulus_bits"] != MODULUS_BITS:
            raise ValueError(f"round_setup payload: modulus_bits must be {MODULUS_BITS}")
        if not isinstance(payload["clients"], list):
            raise ValueError("round_setup payload: clients must be a list")
        cfg = cls(
            round_id=payload["round_id"],
            server_id=payload["server_id"],
            clients=tuple(payload["clients"]),
            vector_length=payload["vector_length"],
            threshold=payload["threshold"],
            input_bound=payload["input_bound"],
            max_colluders=payload["max_colluders"],
            prg=payload["prg"],
        )
        if list(cfg.clients) != payload["clients"]:
            raise ValueError("round_setup payload: clients must be sorted")
        return cfg


# --------------------------------------------------------------------------------------------------
# primitives
# --------------------------------------------------------------------------------------------------

_DOMAIN = b"retail-platform/federate/secagg/v1/"


def _round_salt(round_id: str) -> bytes:
    return hashlib.sha256(_DOMAIN + b"salt\x00" + round_id.encode()).digest()


def _hkdf(ikm: bytes, *, salt: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=_DOMAIN + info).derive(ikm)


def _pair(u: str, v: str) -> bytes:
    lo, hi = sorted((u, v))
    return lo.encode() + b"\x00" + hi.encode()


def _agree(sk: X25519PrivateKey, pk_raw: bytes, *, what: str) -> bytes:
    try:
        return sk.exchange(X25519PublicKey.from_public_bytes(pk_raw))
    except ValueError as exc:  # low-order point / all-zero shared secret
        raise ProtocolError(f"X25519 agreement failed for {what}: {exc}") from None


def share_encryption_key(round_id: str, own_c_sk: X25519PrivateKey, peer_c_pk: bytes, u: str, v: str) -> bytes:
    """AES-256-GCM key of the pair (u, v): HKDF-SHA256 of X25519(c_u^SK, c_v^PK)."""
    shared = _agree(own_c_sk, peer_c_pk, what=f"share encryption {u}<->{v}")
    return _hkdf(shared, salt=_round_salt(round_id), info=b"share-encryption\x00" + _pair(u, v))


def pairwise_seed(round_id: str, own_s_sk: X25519PrivateKey, peer_s_pk: bytes, u: str, v: str) -> bytes:
    """s_uv: HKDF-SHA256 of X25519(s_u^SK, s_v^PK), the same for u and v."""
    shared = _agree(own_s_sk, peer_s_pk, what=f"pairwise mask {u}<->{v}")
    return _hkdf(shared, salt=_round_salt(round_id), info=b"pairwise-mask\x00" + _pair(u, v))


def self_mask_seed(round_id: str, b: bytes, u: str) -> bytes:
    return _hkdf(b, salt=_round_salt(round_id), info=b"self-mask\x00" + u.encode())


def b_commitment(round_id: str, u: str, b: bytes) -> bytes:
    """SHA-256 commitment to the self-mask seed, so the server can check its reconstruction."""
    return hashlib.sha256(_DOMAIN + b"b-commitment\x00" + round_id.encode() + b"\x00" + u.encode() + b"\x00" + b).digest()


def _share_aad(round_id: str, sender: str, recipient: str) -> bytes:
    return _DOMAIN + b"share\x00" + round_id.encode() + b"\x00" + sender.encode() + b"\x00" + recipient.encode()


def prg_words(seed: bytes, length: int, prg: str = PRG_AES_CTR) -> np.ndarray:
    """Expand a 32-byte seed into ``length`` uint64 words (little-endian), i.e. uniform mod 2^64.

    ``aes-ctr``: AES-256-CTR keystream with an all-zero initial counter block (each key is used for
    one expansion only: seeds are fresh per round and per pair). ``shake-256``: the SHAKE-256 XOF.
    """
    if len(seed) != 32:
        raise ValueError("PRG seed must be 32 bytes")
    nbytes = 8 * length
    if prg == PRG_AES_CTR:
        enc = Cipher(algorithms.AES(seed), modes.CTR(b"\x00" * 16)).encryptor()
        stream = enc.update(b"\x00" * nbytes) + enc.finalize()
    elif prg == PRG_SHAKE_256:
        stream = hashlib.shake_256(_DOMAIN + b"prg\x00" + seed).digest(nbytes)
    else:
        raise ValueError(f"unknown PRG {prg!r}")
    return np.frombuffer(stream, dtype="<u8").astype(np.uint64, copy=True)


def shamir_split(secret: bytes, threshold: int, n: int) -> list[bytes]:
    """t-of-n Shamir shares of ``secret`` (a multiple of 16 bytes), for x = 1..n.

    pycryptodome shares 16-byte secrets over GF(2^128); a longer secret is split into 16-byte
    chunks, each shared with its own random polynomial, and share i is the concatenation.
    """
    if not secret or len(secret) % 16:
        raise ValueError("secret length must be a positive multiple of 16 bytes")
    chunks = [secret[i : i + 16] for i in range(0, len(secret), 16)]
    per_chunk = [Shamir.split(threshold, n, chunk) for chunk in chunks]
    return [b"".join(pc[i][1] for pc in per_chunk) for i in range(n)]


def shamir_combine(shares: Sequence[tuple[int, bytes]]) -> bytes:
    """Recombine ``(x, share)`` pairs (pass exactly t of them) into the secret."""
    if not shares:
        raise ValueError("no shares")
    size = len(shares[0][1])
    if size % 16 or any(len(s) != size for _, s in shares):
        raise ValueError("shares must all have the same length, a multiple of 16 bytes")
    return b"".join(
        Shamir.combine([(x, s[i : i + 16]) for x, s in shares]) for i in range(0, size, 16)
    )


def encode_input(vector: Any, length: int, bound: int) -> np.ndarray:
    """Range-check an integer vector (|x_i| <= bound, exact length) and return it as uint64 mod 2^64.

    Accepts a 1-D numpy integer array or a sequence of Python ints; floats and booleans are refused
    (inputs are already-noised fixed-point integers).
    """
    arr = np.asarray(vector)
    if arr.ndim != 1 or arr.shape[0] != length:
        raise ValueError(f"input vector: expected shape ({length},), got {arr.shape}")
    if arr.dtype == object:
        bad = [i for i, x in enumerate(arr.tolist()) if not isinstance(x, int) or isinstance(x, bool)]
        if bad:
            raise TypeError(f"input vector: entry {bad[0]} is {arr[bad[0]]!r}, not an integer")
        out_of_range = [i for i, x in enumerate(arr.tolist()) if not -bound <= x <= bound]
        if out_of_range:
            i = out_of_range[0]
            raise ValueError(f"input vector: entry {i} = {arr[i]} outside [-{bound}, {bound}]")
        arr = np.array(arr.tolist(), dtype=np.int64)
    elif arr.dtype.kind == "u":
        if arr.size and int(arr.max()) > bound:
            i = int(np.argmax(arr > bound))
            raise ValueError(f"input vector: entry {i} = {arr[i]} outside [-{bound}, {bound}]")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind == "i":
        arr = arr.astype(np.int64)
        bad_mask = (arr > bound) | (arr < -bound)
        if bad_mask.any():
            i = int(np.argmax(bad_mask))
            raise ValueError(f"input vector: entry {i} = {arr[i]} outside [-{bound}, {bound}]")
    else:
        raise TypeError(f"input vector: expected integers, got dtype {arr.dtype}")
    return arr.view(np.uint64).copy()


def _encode_vector(words: np.ndarray) -> str:
    return b64encode(words.astype("<u8", copy=False).tobytes())


def _decode_vector(text: Any, length: int, *, field: str) -> np.ndarray:
    raw = b64decode(text, field=field, length=8 * length)
    return np.frombuffer(raw, dtype="<u8").astype(np.uint64, copy=True)


def _sorted_ids(value: Any, *, field: str) -> list[str]:
    if not isinstance(value, list) or any(not isinstance(x, str) for x in value):
        raise ValueError(f"{field}: expected a list of party ids")
    if value != sorted(set(value)):
        raise ValueError(f"{field}: party ids must be sorted and distinct")
    return value


def _exact_keys(payload: Mapping[str, Any], keys: set[str], *, what: str) -> None:
    if set(payload) != keys:
        raise ValueError(f"{what} payload: expected fields {sorted(keys)}, got {sorted(payload)}")


# --------------------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AggregationResult:
    """The exact sum over ``survivors`` (U3), as int64, and who took part in what."""

    round_id: str
    total: np.ndarray = field(repr=False)  # int64, length vector_length
    survivors: tuple[str, ...]  # U3: inputs included in the sum
    dropped: tuple[str, ...]  # U2 \ U3: shared keys, then dropped; their pairwise masks were removed
    not_joined: tuple[str, ...]  # invited clients outside U2 (never advertised or never shared keys)
    unmaskers: tuple[str, ...]  # U5: clients whose unmask shares were used

    def to_list(self) -> list[int]:
        return [int(x) for x in self.total]


# --------------------------------------------------------------------------------------------------
# client
# --------------------------------------------------------------------------------------------------


class SecAggClient:
    """One store's side of one secure aggregation.

    Build it from the coordinator's signed ``round_setup`` message; then call, in order,
    :meth:`advertise_keys`, :meth:`share_keys`, :meth:`masked_input`, :meth:`consistency_check`,
    :meth:`unmask`, each with the coordinator's message that opens the phase, and send the
    returned message. Calling a phase again with the same message returns the same answer (safe
    for redelivery); a different message for a phase already answered is rejected
    (``MessageRejected("replay")``). Persist between tasks with :meth:`to_state`/:meth:`from_state`
    (the state holds the round's secret keys: store-local storage only).
    """

    def __init__(
        self,
        identity: PartyIdentity,
        registry: KeyRegistry,
        round_setup: SignedMessage | str | bytes | Mapping[str, Any],
        *,
        coordinator_id: str,
    ) -> None:
        msg = _parse(round_setup)
        msg = verify_message(msg, registry, round_id=msg.round_id, msg_type=MsgType.ROUND_SETUP,
                             phase=Phase.SETUP, sender=coordinator_id, recipient=None)
        try:
            config = RoundConfig.from_payload(msg.payload)
        except ValueError as exc:
            raise MessageRejected("invalid_payload", str(exc), message=msg) from None
        if config.server_id != msg.sender or config.round_id != msg.round_id:
            raise MessageRejected("invalid_payload", "server_id/round_id differ from the envelope", message=msg)
        if identity.party_id not in config.clients:
            raise MessageRejected("wrong_recipient", f"{identity.party_id!r} is not invited to this round", message=msg)
        self.identity = identity
        self.registry = registry
        self.config = config
        self.setup_message = msg
        self.phase = Phase.SETUP
        self.abort_reason: str | None = None
        self._c_sk: X25519PrivateKey | None = None
        self._s_sk: X25519PrivateKey | None = None
        self._b: bytes | None = None
        self._peers: dict[str, tuple[bytes, bytes]] = {}  # U1: party -> (c_pk, s_pk)
        self._held: dict[str, tuple[bytes, bytes]] = {}  # party -> (share of b, share of s_sk) held by me
        self._u2: list[str] = []
        self._u3: list[str] = []
        self._answers: dict[str, tuple[str, SignedMessage]] = {}  # phase -> (incoming message id, answer)

    @property
    def party_id(self) -> str:
        return self.identity.party_id

    # -- helpers -----------------------------------------------------------------------------------

    def _sign(self, msg_type: str, payload: Mapping[str, Any]) -> SignedMessage:
        return sign_message(self.identity, round_id=self.config.round_id, phase=PHASE_OF[msg_type],
                            msg_type=msg_type, payload=payload, recipient=self.config.server_id)

    def _from_server(self, message: Any, msg_type: str, *, broadcast: bool) -> SignedMessage:
        msg = verify_message(_parse(message), self.registry, round_id=self.config.round_id, msg_type=msg_type,
                             phase=PHASE_OF[msg_type], sender=self.config.server_id,
                             recipient=None if broadcast else self.party_id)
        return msg

    def _replayed(self, phase: str, msg: SignedMessage) -> SignedMessage | None:
        """The cached answer to an identical message, None if this phase is still open."""
        if self.phase in (Phase.ABORTED, Phase.EXCLUDED):
            raise ProtocolError(f"client {self.party_id}: round {self.config.round_id} is {self.phase} ({self.abort_reason})")
        cached = self._answers.get(phase)
        if cached is None:
            return None
        if cached[0] == msg.message_id:
            return cached[1]
        raise MessageRejected("replay", f"phase {phase} was already answered for another message", message=msg)

    def _expect_phase(self, phase: str, msg: SignedMessage | None = None) -> None:
        if self.phase != phase:
            raise MessageRejected("wrong_phase", f"client is in phase {self.phase}, not {phase}", message=msg)

    def _abort(self, phase: str, reason: str) -> RoundAborted:
        self.phase = Phase.ABORTED
        self.abort_reason = reason
        self._wipe()
        return RoundAborted(phase, reason)

    def _fail(self, phase: str, reason: str, msg: SignedMessage) -> MessageRejected:
        """An invalid message from the coordinator: abort this client, report the rejection."""
        self._abort(phase, reason)
        return MessageRejected("invalid_payload", reason, message=msg)

    def _exclude(self, phase: str, reason: str) -> ClientExcluded:
        self.phase = Phase.EXCLUDED
        self.abort_reason = reason
        self._wipe()
        return ClientExcluded(phase, reason)

    def _wipe(self) -> None:
        self._c_sk = self._s_sk = None
        self._b = None
        self._held = {}

    def _remember(self, phase: str, msg: SignedMessage | None, answer: SignedMessage) -> SignedMessage:
        self._answers[phase] = (msg.message_id if msg is not None else "", answer)
        return answer

    # -- phases ------------------------------------------------------------------------------------

    def advertise_keys(self) -> SignedMessage:
        """Phase advertise_keys: fresh X25519 key pairs (c for encryption, s for masking), signed."""
        if Phase.ADVERTISE_KEYS in self._answers:
            return self._answers[Phase.ADVERTISE_KEYS][1]
        self._expect_phase(Phase.SETUP)
        self._c_sk = X25519PrivateKey.generate()
        self._s_sk = X25519PrivateKey.generate()
        answer = self._sign(MsgType.ADVERTISE_KEYS, {
            "c_pk": b64encode(self._c_sk.public_key().public_bytes_raw()),
            "s_pk": b64encode(self._s_sk.public_key().public_bytes_raw()),
        })
        self.phase = Phase.SHARE_KEYS
        return self._remember(Phase.ADVERTISE_KEYS, None, answer)

    def share_keys(self, keys_broadcast: Any) -> SignedMessage:
        """Phase share_keys: check U1, Shamir-share b_u and s_u^SK, encrypt one share pair per peer."""
        msg = self._from_server(keys_broadcast, MsgType.KEYS_BROADCAST, broadcast=True)
        if (cached := self._replayed(Phase.SHARE_KEYS, msg)) is not None:
            return cached
        self._expect_phase(Phase.SHARE_KEYS, msg)
        cfg = self.config
        try:
            _exact_keys(msg.payload, {"advertisements"}, what="keys_broadcast")
            ads = msg.payload["advertisements"]
            if not isinstance(ads, list):
                raise ValueError("advertisements must be a list")
            peers: dict[str, tuple[bytes, bytes]] = {}
            for raw in ads:
                ad = verify_message(SignedMessage.from_dict(raw), self.registry, round_id=cfg.round_id,
                                    msg_type=MsgType.ADVERTISE_KEYS, phase=Phase.ADVERTISE_KEYS,
                                    sender=cfg.clients, recipient=cfg.server_id)
                if ad.sender in peers:
                    raise ValueError(f"two advertisements from {ad.sender}")
                _exact_keys(ad.payload, {"c_pk", "s_pk"}, what="advertise_keys")
                peers[ad.sender] = (b64decode(ad.payload["c_pk"], field="c_pk", length=32),
                                    b64decode(ad.payload["s_pk"], field="s_pk", length=32))
        except MessageRejected as exc:
            raise self._fail(Phase.SHARE_KEYS, f"embedded advertisement rejected: {exc}", msg) from None
        except ValueError as exc:
            raise self._fail(Phase.SHARE_KEYS, str(exc), msg) from None
        assert self._c_sk is not None and self._s_sk is not None
        own = (self._c_sk.public_key().public_bytes_raw(), self._s_sk.public_key().public_bytes_raw())
        if self.party_id not in peers:
            raise self._exclude(Phase.SHARE_KEYS, "not in U1: the advertisement arrived after the phase closed")
        if peers[self.party_id] != own:
            raise self._fail(Phase.SHARE_KEYS, "own advertisement altered in keys_broadcast", msg)
        all_keys = [k for pair in peers.values() for k in pair]
        if len(set(all_keys)) != len(all_keys):
            raise self._fail(Phase.SHARE_KEYS, "public keys in keys_broadcast are not all distinct", msg)
        if len(peers) < cfg.threshold:
            raise self._abort(Phase.SHARE_KEYS, f"only {len(peers)} clients advertised keys (threshold {cfg.threshold})")
        self._peers = dict(sorted(peers.items()))
        self._b = secrets.token_bytes(16)
        n = cfg.n_clients
        b_shares = shamir_split(self._b, cfg.threshold, n)
        sk_shares = shamir_split(self._s_sk.private_bytes_raw(), cfg.threshold, n)
        me = self.party_id
        ciphertexts: dict[str, str] = {}
        for v, (c_pk, _) in self._peers.items():
            i = cfg.share_index(v) - 1
            if v == me:
                self._held[me] = (b_shares[i], sk_shares[i])
                continue
            key = share_encryption_key(cfg.round_id, self._c_sk, c_pk, me, v)
            nonce = secrets.token_bytes(12)
            ct = AESGCM(key).encrypt(nonce, b_shares[i] + sk_shares[i], _share_aad(cfg.round_id, me, v))
            ciphertexts[v] = b64encode(nonce + ct)
        answer = self._sign(MsgType.SHARE_KEYS, {
            "b_commitment": b64encode(b_commitment(cfg.round_id, me, self._b)),
            "ciphertexts": ciphertexts,
        })
        self.phase = Phase.MASKED_INPUT
        return self._remember(Phase.SHARE_KEYS, msg, answer)

    def masked_input(self, shares_forward: Any, vector: Any) -> SignedMessage:
        """Phase masked_input: decrypt the shares received (U2), send y_u = x_u + masks mod 2^64.

        ``vector``: the store's already-noised integer vector, |x_i| <= input_bound.
        """
        msg = self._from_server(shares_forward, MsgType.SHARES_FORWARD, broadcast=False)
        if (cached := self._replayed(Phase.MASKED_INPUT, msg)) is not None:
            return cached
        self._expect_phase(Phase.MASKED_INPUT, msg)
        cfg = self.config
        x = encode_input(vector, cfg.vector_length, cfg.input_bound)  # before any state change
        me = self.party_id
        assert self._c_sk is not None and self._s_sk is not None and self._b is not None
        try:
            _exact_keys(msg.payload, {"ciphertexts"}, what="shares_forward")
            cts = msg.payload["ciphertexts"]
            if not isinstance(cts, dict):
                raise ValueError("ciphertexts must be an object")
            unknown = sorted(set(cts) - (set(self._peers) - {me}))
            if unknown:
                raise ValueError(f"ciphertexts from parties outside U1 or from myself: {unknown}")
            held: dict[str, tuple[bytes, bytes]] = {}
            for u, text in cts.items():
                blob = b64decode(text, field=f"ciphertexts.{u}")
                key = share_encryption_key(cfg.round_id, self._c_sk, self._peers[u][0], me, u)
                try:
                    pt = AESGCM(key).decrypt(blob[:12], blob[12:], _share_aad(cfg.round_id, u, me))
                except InvalidTag:
                    raise ValueError(f"the shares from {u} do not decrypt (tampered or misaddressed)") from None
                if len(pt) != 48:
                    raise ValueError(f"the shares from {u} have {len(pt)} bytes, expected 48")
                held[u] = (pt[:16], pt[16:])
        except (ValueError, ProtocolError) as exc:
            raise self._fail(Phase.MASKED_INPUT, str(exc), msg) from None
        u2 = sorted(set(cts) | {me})
        if len(u2) < cfg.threshold:
            raise self._abort(Phase.MASKED_INPUT, f"only {len(u2)} clients shared keys (threshold {cfg.threshold})")
        self._held.update(held)
        self._u2 = u2
        y = x
        y += prg_words(self_mask_seed(cfg.round_id, self._b, me), cfg.vector_length, cfg.prg)
        for v in u2:
            if v == me:
                continue
            mask = prg_words(pairwise_seed(cfg.round_id, self._s_sk, self._peers[v][1], me, v), cfg.vector_length, cfg.prg)
            if v < me:
                y += mask
            else:
                y -= mask
        answer = self._sign(MsgType.MASKED_INPUT, {"vector_length": cfg.vector_length, "masked": _encode_vector(y)})
        self.phase = Phase.CONSISTENCY_CHECK
        return self._remember(Phase.MASKED_INPUT, msg, answer)

    def consistency_check(self, survivor_set: Any) -> SignedMessage:
        """Phase consistency_check: sign the survivor set U3 announced by the coordinator."""
        msg = self._from_server(survivor_set, MsgType.SURVIVOR_SET, broadcast=True)
        if (cached := self._replayed(Phase.CONSISTENCY_CHECK, msg)) is not None:
            return cached
        self._expect_phase(Phase.CONSISTENCY_CHECK, msg)
        try:
            _exact_keys(msg.payload, {"survivors"}, what="survivor_set")
            u3 = _sorted_ids(msg.payload["survivors"], field="survivors")
            if not set(u3) <= set(self._u2):
                raise ValueError(f"survivors outside U2: {sorted(set(u3) - set(self._u2))}")
        except ValueError as exc:
            raise self._fail(Phase.CONSISTENCY_CHECK, str(exc), msg) from None
        if self.party_id not in u3:
            raise self._exclude(Phase.CONSISTENCY_CHECK, "not in U3: the masked input arrived after the phase closed")
        if len(u3) < self.config.threshold:
            raise self._abort(Phase.CONSISTENCY_CHECK, f"only {len(u3)} survivors (threshold {self.config.threshold})")
        self._u3 = u3
        answer = self._sign(MsgType.CONSISTENCY_CHECK, {"survivors": u3})
        self.phase = Phase.UNMASKING
        return self._remember(Phase.CONSISTENCY_CHECK, msg, answer)

    def unmask(self, unmask_request: Any) -> SignedMessage:
        """Phase unmasking: after checking >= t signatures on the same U3, reveal shares of b_v for
        v in U3 and of s_v^SK for v in U2 \\ U3 (never both kinds for one party)."""
        msg = self._from_server(unmask_request, MsgType.UNMASK_REQUEST, broadcast=True)
        if (cached := self._replayed(Phase.UNMASKING, msg)) is not None:
            return cached
        if self.phase == Phase.CONSISTENCY_CHECK:
            # the consistency phase closed without this client's signature: it is not in U4 and must
            # not reveal anything (its input is in the sum all the same: it is in U3)
            raise self._exclude(Phase.UNMASKING, "not in U4: the consistency signature arrived after the phase closed")
        self._expect_phase(Phase.UNMASKING, msg)
        cfg = self.config
        try:
            _exact_keys(msg.payload, {"survivors", "dropped", "signatures"}, what="unmask_request")
            u3 = _sorted_ids(msg.payload["survivors"], field="survivors")
            dropped = _sorted_ids(msg.payload["dropped"], field="dropped")
            if u3 != self._u3:
                raise ValueError("survivor set differs from the one this client signed")
            expected_dropped = sorted(set(self._u2) - set(u3))
            if dropped != expected_dropped:
                raise ValueError(f"dropped set {dropped} differs from U2 \\ U3 = {expected_dropped}")
            sigs = msg.payload["signatures"]
            if not isinstance(sigs, list):
                raise ValueError("signatures must be a list")
            signers: set[str] = set()
            for raw in sigs:
                sig = verify_message(SignedMessage.from_dict(raw), self.registry, round_id=cfg.round_id,
                                     msg_type=MsgType.CONSISTENCY_CHECK, phase=Phase.CONSISTENCY_CHECK,
                                     sender=u3, recipient=cfg.server_id)
                if sig.payload != {"survivors": u3}:
                    raise ValueError(f"{sig.sender} signed a different survivor set")
                signers.add(sig.sender)
            if len(signers) < cfg.threshold:
                raise ValueError(f"only {len(signers)} distinct consistency signatures (threshold {cfg.threshold})")
        except MessageRejected as exc:
            raise self._fail(Phase.UNMASKING, f"consistency signature rejected: {exc}", msg) from None
        except ValueError as exc:
            raise self._fail(Phase.UNMASKING, str(exc), msg) from None
        assert not set(u3) & set(dropped)
        answer = self._sign(MsgType.UNMASK_RESPONSE, {
            "b_shares": {v: b64encode(self._held[v][0]) for v in u3},
            "sk_shares": {v: b64encode(self._held[v][1]) for v in dropped},
        })
        self.phase = Phase.DONE
        self._wipe()
        return self._remember(Phase.UNMASKING, msg, answer)

    def handle_abort(self, round_abort: Any) -> str:
        """The coordinator's signed ``round_abort``: stop, forget the secrets, return the reason."""
        msg = self._from_server(round_abort, MsgType.ROUND_ABORT, broadcast=True)
        reason = str(msg.payload.get("reason", ""))
        if self.phase != Phase.DONE:
            self._abort(str(msg.payload.get("phase", self.phase)), reason)
        return reason

    def handle_result(self, round_result: Any) -> bool:
        """The coordinator's signed ``round_result``: True when this client's input is in the sum
        (it is in ``survivors``): the store then charges its privacy budget for the round."""
        msg = self._from_server(round_result, MsgType.ROUND_RESULT, broadcast=True)
        survivors = msg.payload.get("survivors")
        if not isinstance(survivors, list):
            raise MessageRejected("invalid_payload", "survivors must be a list", message=msg)
        self._wipe()
        return self.party_id in survivors

    # -- persistence -------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """JSON-able state, secrets included (keep it at the store, encrypted at rest)."""
        return {
            "kind": "secagg_client", "version": 1,
            "party_id": self.party_id,
            "round_setup": self.setup_message.to_dict(),
            "phase": self.phase,
            "abort_reason": self.abort_reason,
            "c_sk": b64encode(self._c_sk.private_bytes_raw()) if self._c_sk else None,
            "s_sk": b64encode(self._s_sk.private_bytes_raw()) if self._s_sk else None,
            "b": b64encode(self._b) if self._b else None,
            "peers": {p: [b64encode(c), b64encode(s)] for p, (c, s) in self._peers.items()},
            "held": {p: [b64encode(b), b64encode(s)] for p, (b, s) in self._held.items()},
            "u2": self._u2,
            "u3": self._u3,
            "answers": {ph: [mid, ans.to_dict()] for ph, (mid, ans) in self._answers.items()},
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], identity: PartyIdentity, registry: KeyRegistry) -> SecAggClient:
        if state.get("kind") != "secagg_client" or state.get("version") != 1:
            raise ValueError("not a secagg client state (version 1)")
        if state["party_id"] != identity.party_id:
            raise ValueError("state belongs to another party")
        setup = SignedMessage.from_dict(state["round_setup"])
        client = cls(identity, registry, setup, coordinator_id=setup.sender)
        client.phase = state["phase"]
        client.abort_reason = state["abort_reason"]
        if state["c_sk"]:
            client._c_sk = X25519PrivateKey.from_private_bytes(b64decode(state["c_sk"], field="c_sk", length=32))
        if state["s_sk"]:
            client._s_sk = X25519PrivateKey.from_private_bytes(b64decode(state["s_sk"], field="s_sk", length=32))
        client._b = b64decode(state["b"], field="b", length=16) if state["b"] else None
        client._peers = {p: (b64decode(c, field="c_pk"), b64decode(s, field="s_pk")) for p, (c, s) in state["peers"].items()}
        client._held = {p: (b64decode(b, field="b"), b64decode(s, field="sk")) for p, (b, s) in state["held"].items()}
        client._u2 = list(state["u2"])
        client._u3 = list(state["u3"])
        client._answers = {ph: (mid, SignedMessage.from_dict(ans)) for ph, (mid, ans) in state["answers"].items()}
        return client


def _parse(message: Any) -> SignedMessage:
    if isinstance(message, SignedMessage):
        return message
    if isinstance(message, (str, bytes)):
        return SignedMessage.from_json(message)
    return SignedMessage.from_dict(message)


# --------------------------------------------------------------------------------------------------
# server
# --------------------------------------------------------------------------------------------------

#: at most this many t-subsets are tried when a reconstruction fails its check (a corrupt share)
MAX_RECONSTRUCTION_TRIES = 64


class SecAggServer:
    """The coordinator's side of one secure aggregation (honest-but-curious; signs what it sends).

    Flow: :meth:`round_setup` (broadcast) -> phase advertise_keys. In each phase feed every arriving
    client message to :meth:`receive` (True: accepted, False: identical duplicate; raises
    ``MessageRejected`` otherwise: log it and go on), and when :meth:`pending` is empty or the phase
    timed out call the phase's ``close_*`` method, which returns what to send next or raises
    :class:`RoundAborted` (then broadcast :meth:`abort_message`).
    """

    def __init__(self, config: RoundConfig, identity: PartyIdentity, registry: KeyRegistry) -> None:
        if identity.party_id != config.server_id:
            raise ValueError(f"identity {identity.party_id!r} is not the round's server_id {config.server_id!r}")
        self.config = config
        self.identity = identity
        self.registry = registry
        missing = [p for p in (config.server_id, *config.clients) if p not in registry]
        if missing:
            raise ValueError(f"registry: no public key for {missing}")
        self.phase = Phase.ADVERTISE_KEYS
        self.abort_reason: str | None = None
        self.abort_phase: str | None = None
        self.result: AggregationResult | None = None
        self.received: dict[str, dict[str, SignedMessage]] = {ph: {} for ph in CLIENT_MESSAGE_OF_PHASE}
        self.u1: list[str] = []
        self.u2: list[str] = []
        self.u3: list[str] = []
        self.u4: list[str] = []
        self.u5: list[str] = []
        self._masked: dict[str, np.ndarray] = {}
        self._setup = sign_message(identity, round_id=config.round_id, phase=Phase.SETUP,
                                   msg_type=MsgType.ROUND_SETUP, payload=config.to_payload())

    # -- helpers -----------------------------------------------------------------------------------

    def _sign(self, msg_type: str, payload: Mapping[str, Any], recipient: str | None = None) -> SignedMessage:
        return sign_message(self.identity, round_id=self.config.round_id, phase=PHASE_OF[msg_type],
                            msg_type=msg_type, payload=payload, recipient=recipient)

    def round_setup(self) -> SignedMessage:
        """The signed ``round_setup`` broadcast (the secure-aggregation part of the invitation)."""
        return self._setup

    def expected(self) -> list[str]:
        """Clients expected to send a message in the current phase."""
        return {
            Phase.ADVERTISE_KEYS: list(self.config.clients),
            Phase.SHARE_KEYS: self.u1,
            Phase.MASKED_INPUT: self.u2,
            Phase.CONSISTENCY_CHECK: self.u3,
            Phase.UNMASKING: self.u4,
        }.get(self.phase, [])

    def pending(self) -> list[str]:
        """Expected clients that have not answered yet in the current phase."""
        got = self.received.get(self.phase, {})
        return [p for p in self.expected() if p not in got]

    def _check_count(self, parties: Sequence[str], what: str) -> None:
        if len(parties) < self.config.threshold:
            self._set_aborted(f"only {len(parties)} {what} (threshold {self.config.threshold})")
            raise RoundAborted(self.abort_phase or self.phase, self.abort_reason or "")

    def _set_aborted(self, reason: str) -> None:
        self.abort_phase = self.phase
        self.abort_reason = reason
        self.phase = Phase.ABORTED
        self._masked = {}

    def _require_phase(self, phase: str) -> None:
        if self.phase != phase:
            raise ProtocolError(f"server is in phase {self.phase}, cannot close {phase}")

    # -- receiving ---------------------------------------------------------------------------------

    def receive(self, message: Any) -> bool:
        """Verify and store one client message of the current phase.

        Returns True when accepted, False for a byte-identical redelivery; raises
        ``MessageRejected`` (tampered, unsigned, unknown sender, other round, wrong or late phase,
        sender not expected, a different second message, bad payload).
        """
        msg = verify_message(_parse(message), self.registry, round_id=self.config.round_id,
                             recipient=self.config.server_id)
        if self.phase not in CLIENT_MESSAGE_OF_PHASE:
            raise MessageRejected("wrong_phase", f"round is {self.phase}; no client message is accepted", message=msg)
        expected_type = CLIENT_MESSAGE_OF_PHASE[self.phase]
        if msg.msg_type != expected_type or msg.phase != self.phase:
            raise MessageRejected(
                "wrong_phase", f"{msg.msg_type} (phase {msg.phase}) arrives in phase {self.phase}: expected {expected_type}",
                message=msg)
        if msg.sender not in self.expected():
            raise MessageRejected("wrong_sender", f"{msg.sender!r} is not expected in phase {self.phase}", message=msg)
        slot = self.received[self.phase]
        old = slot.get(msg.sender)
        if old is not None:
            if old.message_id == msg.message_id:
                return False
            raise MessageRejected("replay", "a different message from this sender was already accepted", message=msg)
        try:
            vector = self._validate(msg)
        except ValueError as exc:
            raise MessageRejected("invalid_payload", str(exc), message=msg) from None
        if vector is not None:
            self._masked[msg.sender] = vector
        slot[msg.sender] = msg
        return True

    def _validate(self, msg: SignedMessage) -> np.ndarray | None:
        """Check a payload; return the decoded vector of a masked input."""
        p, cfg = msg.payload, self.config
        if msg.msg_type == MsgType.ADVERTISE_KEYS:
            _exact_keys(p, {"c_pk", "s_pk"}, what="advertise_keys")
            c_pk = b64decode(p["c_pk"], field="c_pk", length=32)
            s_pk = b64decode(p["s_pk"], field="s_pk", length=32)
            if c_pk == s_pk:
                raise ValueError("c_pk and s_pk must differ")
        elif msg.msg_type == MsgType.SHARE_KEYS:
            _exact_keys(p, {"b_commitment", "ciphertexts"}, what="share_keys")
            b64decode(p["b_commitment"], field="b_commitment", length=32)
            cts = p["ciphertexts"]
            if not isinstance(cts, dict) or set(cts) != set(self.u1) - {msg.sender}:
                raise ValueError("ciphertexts must hold exactly one entry per other client of U1")
            for v, text in cts.items():
                b64decode(text, field=f"ciphertexts.{v}", length=12 + 48 + 16)
        elif msg.msg_type == MsgType.MASKED_INPUT:
            _exact_keys(p, {"vector_length", "masked"}, what="masked_input")
            if p["vector_length"] != cfg.vector_length:
                raise ValueError(f"vector_length {p['vector_length']} != {cfg.vector_length}")
            return _decode_vector(p["masked"], cfg.vector_length, field="masked")
        elif msg.msg_type == MsgType.CONSISTENCY_CHECK:
            _exact_keys(p, {"survivors"}, what="consistency_check")
            if p["survivors"] != self.u3:
                raise ValueError("signed a survivor set other than the one announced")
        elif msg.msg_type == MsgType.UNMASK_RESPONSE:
            _exact_keys(p, {"b_shares", "sk_shares"}, what="unmask_response")
            b, sk = p["b_shares"], p["sk_shares"]
            dropped = sorted(set(self.u2) - set(self.u3))
            if not isinstance(b, dict) or sorted(b) != self.u3:
                raise ValueError("b_shares must hold exactly one share per survivor")
            if not isinstance(sk, dict) or sorted(sk) != dropped:
                raise ValueError("sk_shares must hold exactly one share per dropped client")
            for v, text in b.items():
                b64decode(text, field=f"b_shares.{v}", length=16)
            for v, text in sk.items():
                b64decode(text, field=f"sk_shares.{v}", length=32)
        return None

    # -- closing phases ----------------------------------------------------------------------------

    def close_advertise_keys(self) -> SignedMessage:
        """End advertise_keys: U1 = advertisers; broadcast their signed keys (``keys_broadcast``)."""
        self._require_phase(Phase.ADVERTISE_KEYS)
        got = self.received[Phase.ADVERTISE_KEYS]
        self.u1 = sorted(got)
        self._check_count(self.u1, "clients advertised keys")
        self.phase = Phase.SHARE_KEYS
        return self._sign(MsgType.KEYS_BROADCAST, {"advertisements": [got[u].to_dict() for u in self.u1]})

    def close_share_keys(self) -> dict[str, SignedMessage]:
        """End share_keys: U2 = who sent shares; one ``shares_forward`` per client of U2."""
        self._require_phase(Phase.SHARE_KEYS)
        got = self.received[Phase.SHARE_KEYS]
        self.u2 = sorted(got)
        self._check_count(self.u2, "clients shared keys")
        self.phase = Phase.MASKED_INPUT
        return {
            v: self._sign(MsgType.SHARES_FORWARD,
                          {"ciphertexts": {u: got[u].payload["ciphertexts"][v] for u in self.u2 if u != v}},
                          recipient=v)
            for v in self.u2
        }

    def close_masked_input(self) -> SignedMessage:
        """End masked_input: U3 = who sent a masked input; broadcast it (``survivor_set``)."""
        self._require_phase(Phase.MASKED_INPUT)
        self.u3 = sorted(self.received[Phase.MASKED_INPUT])
        self._check_count(self.u3, "clients sent masked inputs")
        self.phase = Phase.CONSISTENCY_CHECK
        return self._sign(MsgType.SURVIVOR_SET, {"survivors": self.u3})

    def close_consistency_check(self) -> SignedMessage:
        """End consistency_check: U4 = signers; broadcast ``unmask_request`` with their signatures."""
        self._require_phase(Phase.CONSISTENCY_CHECK)
        got = self.received[Phase.CONSISTENCY_CHECK]
        self.u4 = sorted(got)
        self._check_count(self.u4, "clients signed the survivor set")
        self.phase = Phase.UNMASKING
        return self._sign(MsgType.UNMASK_REQUEST, {
            "survivors": self.u3,
            "dropped": sorted(set(self.u2) - set(self.u3)),
            "signatures": [got[u].to_dict() for u in self.u4],
        })

    def close_unmasking(self) -> AggregationResult:
        """End unmasking: reconstruct b_u (u in U3) and s_u^SK (u in U2 \\ U3) from the shares of
        U5, remove the masks, check the range; return the exact sum, or raise :class:`RoundAborted`."""
        self._require_phase(Phase.UNMASKING)
        cfg = self.config
        got = self.received[Phase.UNMASKING]
        self.u5 = sorted(got)
        self._check_count(self.u5, "clients sent unmask shares")
        dropped = sorted(set(self.u2) - set(self.u3))
        adverts = {u: m.payload for u, m in self.received[Phase.ADVERTISE_KEYS].items()}
        s_pk = {u: b64decode(a["s_pk"], field="s_pk", length=32) for u, a in adverts.items()}
        commitments = {u: b64decode(m.payload["b_commitment"], field="b_commitment", length=32)
                       for u, m in self.received[Phase.SHARE_KEYS].items()}
        try:
            total = np.zeros(cfg.vector_length, dtype=np.uint64)
            for u in self.u3:
                total += self._masked[u]
            for u in self.u3:
                shares = [(cfg.share_index(v), b64decode(got[v].payload["b_shares"][u], field="b_share"))
                          for v in self.u5]
                b = self._reconstruct(shares, lambda s, u=u: b_commitment(cfg.round_id, u, s) == commitments[u],
                                      what=f"self-mask seed of {u}")
                total -= prg_words(self_mask_seed(cfg.round_id, b, u), cfg.vector_length, cfg.prg)
            for u in dropped:
                shares = [(cfg.share_index(v), b64decode(got[v].payload["sk_shares"][u], field="sk_share"))
                          for v in self.u5]
                raw = self._reconstruct(
                    shares,
                    lambda s, u=u: X25519PrivateKey.from_private_bytes(s).public_key().public_bytes_raw() == s_pk[u],
                    what=f"mask key of dropped {u}")
                s_sk = X25519PrivateKey.from_private_bytes(raw)
                for v in self.u3:
                    # v added +PRG(s_uv) if u < v and -PRG(s_uv) if u > v: take it out again
                    mask = prg_words(pairwise_seed(cfg.round_id, s_sk, s_pk[v], u, v), cfg.vector_length, cfg.prg)
                    if u < v:
                        total -= mask
                    else:
                        total += mask
        except ProtocolError as exc:
            self._set_aborted(str(exc))
            raise RoundAborted(Phase.UNMASKING, str(exc)) from None
        signed = total.view(np.int64)
        limit = len(self.u3) * cfg.input_bound
        bad = (signed > limit) | (signed < -limit)
        if bad.any():
            i = int(np.argmax(bad))
            self._set_aborted(f"decoded sum entry {i} = {int(signed[i])} outside [-{limit}, {limit}]: "
                              "a client sent an out-of-range input or the unmasking is inconsistent")
            raise RoundAborted(Phase.UNMASKING, self.abort_reason or "")
        self.result = AggregationResult(
            round_id=cfg.round_id,
            total=signed.copy(),
            survivors=tuple(self.u3),
            dropped=tuple(dropped),
            not_joined=tuple(sorted(set(cfg.clients) - set(self.u2))),
            unmaskers=tuple(self.u5),
        )
        self.phase = Phase.DONE
        self._masked = {}
        return self.result

    def _reconstruct(self, shares: list[tuple[int, bytes]], check: Any, *, what: str) -> bytes:
        t = self.config.threshold
        for combo in itertools.islice(itertools.combinations(shares, t), MAX_RECONSTRUCTION_TRIES):
            secret = shamir_combine(list(combo))
            if check(secret):
                return secret
        raise ProtocolError(f"cannot reconstruct the {what}: the shares are inconsistent")

    def close_phase(self) -> Any:
        """Close whatever phase is current (the ``close_*`` method of :attr:`phase`)."""
        closer = {
            Phase.ADVERTISE_KEYS: self.close_advertise_keys,
            Phase.SHARE_KEYS: self.close_share_keys,
            Phase.MASKED_INPUT: self.close_masked_input,
            Phase.CONSISTENCY_CHECK: self.close_consistency_check,
            Phase.UNMASKING: self.close_unmasking,
        }.get(self.phase)
        if closer is None:
            raise ProtocolError(f"no phase to close: round is {self.phase}")
        return closer()

    def abort(self, reason: str) -> SignedMessage:
        """Abort on the transport's decision (e.g. the whole round timed out); returns ``round_abort``."""
        if self.phase not in (Phase.DONE, Phase.ABORTED):
            self._set_aborted(reason)
        return self.abort_message()

    def abort_message(self) -> SignedMessage:
        """Signed ``round_abort`` broadcast (after :class:`RoundAborted` or :meth:`abort`)."""
        if self.phase != Phase.ABORTED:
            raise ProtocolError("the round is not aborted")
        return self._sign(MsgType.ROUND_ABORT, {"phase": self.abort_phase or "", "reason": self.abort_reason or ""})

    def result_message(self) -> SignedMessage:
        """Signed ``round_result`` broadcast: who was counted and a digest of the sum (not the sum)."""
        if self.result is None:
            raise ProtocolError("the round has no result")
        r = self.result
        return self._sign(MsgType.ROUND_RESULT, {
            "survivors": list(r.survivors), "dropped": list(r.dropped), "not_joined": list(r.not_joined),
            "vector_length": int(r.total.shape[0]),
            "sum_sha256": hashlib.sha256(r.total.astype("<i8").tobytes()).hexdigest(),
        })

    # -- persistence -------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """JSON-able state (no secrets of any store; the masked inputs are included)."""
        return {
            "kind": "secagg_server", "version": 1,
            "config": self.config.to_payload(),
            "phase": self.phase,
            "abort_phase": self.abort_phase,
            "abort_reason": self.abort_reason,
            "received": {ph: {p: m.to_dict() for p, m in got.items()} for ph, got in self.received.items()},
            "u": [self.u1, self.u2, self.u3, self.u4, self.u5],
            "result": None if self.result is None else {
                "total": _encode_vector(self.result.total.view(np.uint64)),
                "survivors": list(self.result.survivors), "dropped": list(self.result.dropped),
                "not_joined": list(self.result.not_joined), "unmaskers": list(self.result.unmaskers),
            },
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], identity: PartyIdentity, registry: KeyRegistry) -> SecAggServer:
        if state.get("kind") != "secagg_server" or state.get("version") != 1:
            raise ValueError("not a secagg server state (version 1)")
        cfg = RoundConfig.from_payload(state["config"])
        server = cls(cfg, identity, registry)
        server.phase = state["phase"]
        server.abort_phase = state["abort_phase"]
        server.abort_reason = state["abort_reason"]
        server.received = {ph: {p: SignedMessage.from_dict(m) for p, m in got.items()}
                           for ph, got in state["received"].items()}
        server.u1, server.u2, server.u3, server.u4, server.u5 = (list(x) for x in state["u"])
        if server.phase not in (Phase.DONE, Phase.ABORTED):
            server._masked = {p: _decode_vector(m.payload["masked"], cfg.vector_length, field="masked")
                              for p, m in server.received[Phase.MASKED_INPUT].items()}
        r = state["result"]
        if r is not None:
            server.result = AggregationResult(
                round_id=cfg.round_id,
                total=_decode_vector(r["total"], cfg.vector_length, field="total").view(np.int64),
                survivors=tuple(r["survivors"]), dropped=tuple(r["dropped"]),
                not_joined=tuple(r["not_joined"]), unmaskers=tuple(r["unmaskers"]),
            )
        return server
