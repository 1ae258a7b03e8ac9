"""The AMQP side: topology, messages, the confirmed publisher, parked queues, AsyncAPI."""
