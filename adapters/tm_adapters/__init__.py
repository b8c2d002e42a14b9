"""Adapters: the domain's ports made real with MongoDB, Kafka and the providers.

Each module here wraps one outside system behind a port the domain or a
deployable defines. The deployables (`tm_service`, `tm_streams`) wire them
together; nothing here imports a deployable.
"""
