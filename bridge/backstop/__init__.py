"""The backstop: polling the platforms for cancellations whose webhook never came."""
