"""serving: the recommend API (HTTP) over the newest model snapshot and live user histories."""
