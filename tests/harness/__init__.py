"""What tests run the bridge with (helpers; the fixtures are in `tests/conftest.py`).

A broker's queues, the receiver, stores, the whole bridge in one process, bridge processes, a TCP
proxy, RabbitMQ nodes of a test's own, the wire's raw bytes, the markers of file names.
"""
