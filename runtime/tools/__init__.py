"""Tools: the command-line programs over the runtime: `serve`, `predict`, `evaluate`, `synth`, `space`.

Each has `configure(parser)` and `run(args) -> int` for the `vreyesam` command. The top of the house: a
tool may use any room; no room imports a tool (the synthetic generator reaches the exporter only through
`vreyesam.runtime.surface`).
"""
