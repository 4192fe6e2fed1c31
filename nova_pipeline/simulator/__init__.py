"""A faithful fake of the NovaConnect `report/call_sms` API, served over real HTTP.

It imports nothing from Dagster: tests, the demo and the UI run the real client against it.
"""

from nova_pipeline.simulator.app import RunningSimulator, Simulator, SimulatorConfig
from nova_pipeline.simulator.dataset import FleetSpec

__all__ = ["FleetSpec", "RunningSimulator", "Simulator", "SimulatorConfig"]
