"""The demo: one cancellation end to end, with a fake Shoplazza sender and a fake CJ."""
