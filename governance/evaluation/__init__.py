"""Policy evaluation, in three parts a newcomer can read in order:

- `specs`: the enabled policies and active waivers, compiled once for in-memory checks;
- `diff`: pure — specs + one instance's state + its open violations → the changes to store;
- `store`: reads a chunk of instances, applies a batch of changes, recounts the policies.

`run` ties them together (lock, read, diff, store) chunk by chunk; `locks` says what serialises what.
"""
