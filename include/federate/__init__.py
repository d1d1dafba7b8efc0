"""Federated rounds: secure aggregation (Bonawitz et al., CCS 2017) and signed protocol messages.

Pure protocol logic (no Airflow, no Kafka, no I/O): ``keys`` (Ed25519 identities, key registry),
``messages`` (JSON envelope, canonical form, signatures, replay guard), ``secagg`` (client and server
state machines), ``driver`` (in-process reference transport). See ``docs/federate.md``.

The round layer on top (no Airflow either): ``protocol`` (round spec and messages), ``candidates``
(public level-wise domain), ``client`` / ``coordinator`` (state machines over Kafka), ``aggregate``
(global patterns), ``topics`` / ``transport`` (Kafka), ``records`` / ``identities`` / ``store_db`` /
``live`` (tables, keys, Redis), ``service`` (the DAG steps), ``agent`` and ``__main__`` (CLIs).
"""
