from wattwise.cli import run

run()
