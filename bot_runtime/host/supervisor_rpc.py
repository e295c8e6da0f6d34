"""An XML-RPC namespace (``botfactory``) loaded into the host's own supervisord: add one program without reloadConfig.

supervisord learns of new program files only through ``reloadConfig``, which re-reads every included file, and
its include handling is quadratic in the number of files (configparser re-joins every section on each read): 40 ms
at 100 running programs, 0.4 s at 400, 1.4 s at 800 here. A cold start (wake → ready, goal 1.5 s) on a full host
would be spent mostly there. ``addProgramFile`` parses just the one file, with the same code supervisord uses for
its own config (``UnhosedConfigParser`` + ``processes_from_section``), and adds the group, so a start costs the same
with 10 or 1,000 programs running. The file stays in ``conf.d`` (only running tenants have one), so a manual
``supervisorctl reread`` or a supervisord restart sees exactly the same programs.

Loaded by the ``[rpcinterface:botfactory]`` section the agent writes (``supervisor.rpcinterface_factory =
bot_runtime.host.supervisor_rpc:make_interface``); this module runs inside supervisord, not in the agent.
"""

from __future__ import annotations

from typing import Any

from supervisor.options import ProcessConfig, ProcessGroupConfig, UnhosedConfigParser, process_or_group_name
from supervisor.states import SupervisorStates
from supervisor.xmlrpc import Faults, RPCError

API_VERSION = "1"


class BotFactoryNamespace:
    # Method names are camelCase like supervisord's own XML-RPC API.
    def __init__(self, supervisord: Any) -> None:
        self.supervisord = supervisord

    def getAPIVersion(self) -> str:
        """Version of this namespace (the agent checks it to know the plugin is loaded)."""
        return API_VERSION

    def addProgramFile(self, path: str) -> list[str]:
        """Parse one program file and add its groups (like reloadConfig + addProcessGroup, for this file only).

        @param string path   a file with ``[program:NAME]`` sections
        @return array        the names of the groups added (already present ones are replaced when stopped)
        """
        options = self.supervisord.options
        if isinstance(options.mood, int) and options.mood < SupervisorStates.RUNNING:
            raise RPCError(Faults.SHUTDOWN_STATE)
        parser = UnhosedConfigParser()
        parser.expansions = dict(options.environ_expansions)
        try:
            if not parser.read([path]):
                raise RPCError(Faults.BAD_NAME, f"cannot read {path}")
            added = []
            for section in parser.sections():
                if not section.startswith("program:"):
                    raise RPCError(Faults.INCORRECT_PARAMETERS, f"{path}: only [program:x] sections, got [{section}]")
                name = process_or_group_name(section.split(":", 1)[1])
                processes = options.processes_from_section(parser, section, name, ProcessConfig)
                config = ProcessGroupConfig(options, name, 999, processes)
                existing = self.supervisord.process_groups.get(name)
                if existing is not None:
                    if existing.get_unstopped_processes():
                        raise RPCError(Faults.ALREADY_ADDED, name)
                    self.supervisord.remove_process_group(name)
                options.process_group_configs = [
                    group for group in options.process_group_configs if group.name != name
                ] + [config]
                self.supervisord.add_process_group(config)
                added.append(name)
            return added
        except ValueError as exc:  # supervisord's own wording for a bad value
            raise RPCError(Faults.INCORRECT_PARAMETERS, str(exc)) from exc

    def forgetProgram(self, name: str) -> bool:
        """Remove a stopped group and its config (removeProcessGroup keeps the config until the next reread).

        @param string name   the group
        @return boolean      True when removed, False when it was not known
        """
        options = self.supervisord.options
        if name in self.supervisord.process_groups:
            if not self.supervisord.remove_process_group(name):
                raise RPCError(Faults.STILL_RUNNING, name)
        before = len(options.process_group_configs)
        options.process_group_configs = [group for group in options.process_group_configs if group.name != name]
        return before != len(options.process_group_configs)


def make_interface(supervisord: Any, **_config: Any) -> BotFactoryNamespace:
    return BotFactoryNamespace(supervisord)
