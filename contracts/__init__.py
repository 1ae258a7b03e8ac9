"""Pure data shared by every part of the bridge: the canonical event and platform payloads."""
