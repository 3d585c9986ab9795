"""The whole local stack in one place: Azurite, the simulator and devhost as child processes.

`make run` (foreground, Ctrl-C stops all), `make demo` (one job end to end) and the end-to-end
tests start the stack through this package, so all three start it the same way, wait for it the
same way, and leave no process behind. The product code never imports it.
"""
