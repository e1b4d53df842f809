"""The guest agent: wire protocol (protocol.py) and host-side client (client.py)."""

from pytest_vmm.agent.client import AgentClient, AgentError, AgentTimeout, Hello
from pytest_vmm.agent.protocol import READY_REGEX, ErrorCode

__all__ = ["READY_REGEX", "AgentClient", "AgentError", "AgentTimeout", "ErrorCode", "Hello"]
