"""MeshFlow: Temporal's programming model (workflows, activities, signals) with no server.

    from hotmesh import MeshFlow, workflow

    acts = workflow.proxy_activities(activities)       # module of activity functions

    async def example(name: str) -> list[str]:
        return list(await asyncio.gather(acts.greet(name), acts.saludar(name)))

    worker = await MeshFlow.Worker.create(task_queue="default", workflow=example)
    handle = await MeshFlow.Client().workflow.start(example, args=["HotMesh"])
    print(await handle.result())
"""

from __future__ import annotations

from hotmesh._runtime import runtime
from hotmesh.meshflow import workflow
from hotmesh.meshflow._activities import ActivityInfo, activity_info
from hotmesh.meshflow.client import Client, WorkflowHandle
from hotmesh.meshflow.worker import Worker

__all__ = ["ActivityInfo", "Client", "MeshFlow", "Worker", "WorkflowHandle", "activity_info", "workflow"]


class MeshFlow:
    """Namespace mirroring the original: ``MeshFlow.Client``, ``MeshFlow.Worker``, ``MeshFlow.workflow``."""

    Client = Client
    Worker = Worker
    workflow = workflow
    activity_info = staticmethod(activity_info)

    @staticmethod
    async def shutdown(grace: float = 5.0) -> None:
        """Stop every worker in this process and close the shared connections."""
        await runtime.shutdown(grace)
