"""Reads template.yaml, the single source of truth for routes, functions, tables and their environment.

The local stack and the test harness build everything from here, so they cannot drift from what deploys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = ROOT / "template.yaml"
LOCAL_STAGE = "local"
LOCAL_REGION = "us-east-1"
LOCAL_ACCOUNT = "123456789012"


# What `!Ref AWS::NoValue` resolves to: the property it is the value of is left out.
NO_VALUE: Any = type("NoValue", (), {"__repr__": lambda self: "AWS::NoValue"})()


class _CfnLoader(yaml.SafeLoader):
    """YAML loader that keeps CloudFormation short-form tags (!Ref, !Sub, …) as {'Fn::X': value}."""


def _construct_tag(loader: _CfnLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if tag_suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # API Gateway form: /ai-sessions/{session_id}
    function: str  # logical id
    pattern: re.Pattern[str] = field(compare=False)

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class Function:
    logical_id: str
    code_dir: Path
    handler: str
    environment: dict[str, Any]


@cache
def load() -> dict[str, Any]:
    return yaml.load(TEMPLATE_PATH.read_text(), Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass


def resources(kind: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in load()["Resources"].items() if res["Type"] == kind}


def physical_name(logical_id: str) -> str:
    """The name a resource gets on the local stack (tables, functions, state machines)."""
    res = load()["Resources"][logical_id]
    props = res.get("Properties", {})
    name = props.get("TableName") or props.get("FunctionName") or props.get("Name")
    if name is not None:
        return str(resolve(name))
    return f"flowpilot-{LOCAL_STAGE}-{logical_id}"


def function_arn(logical_id: str) -> str:
    return f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT}:function:{physical_name(logical_id)}"


def function_alias(logical_id: str) -> str | None:
    """The alias SAM publishes for a function (`AutoPublishAlias`, its own or the Globals'), if any."""
    glob = load().get("Globals", {}).get("Function", {})
    alias = load()["Resources"][logical_id]["Properties"].get("AutoPublishAlias", glob.get("AutoPublishAlias"))
    return str(resolve(alias)) if alias is not None else None


def function_alias_arn(logical_id: str) -> str:
    """What `!Ref Function.Alias` resolves to on the local stack, which publishes no versions: the
    function itself, as long as the template gives the function an alias (else, as in SAM, an error)."""
    if function_alias(logical_id) is None:
        raise KeyError(f"{logical_id} has no AutoPublishAlias, so {logical_id}.Alias does not exist")
    return function_arn(logical_id)


def condition(name: str) -> bool:
    """A template condition, evaluated with the local stack's parameters (so `IsProd` is false here)."""
    return bool(_evaluate(load().get("Conditions", {})[name]))


def _evaluate(expression: Any) -> Any:
    if isinstance(expression, dict) and len(expression) == 1:
        ((key, arg),) = expression.items()
        if key == "Fn::Equals":
            return str(_evaluate(arg[0])) == str(_evaluate(arg[1]))
        if key == "Fn::Not":
            return not _evaluate(arg[0])
        if key == "Fn::And":
            return all(_evaluate(a) for a in arg)
        if key == "Fn::Or":
            return any(_evaluate(a) for a in arg)
        if key == "Condition":
            return condition(arg)
    return resolve(expression)


def resolve(value: Any, extra: dict[str, str] | None = None) -> Any:
    """Resolve the intrinsics the template uses, as they would be on the local stack."""
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref":
            return _ref(arg, extra)
        if key == "Fn::Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
            return re.sub(
                r"\$\{([^}]+)\}",
                lambda m: str(
                    resolve(variables[m.group(1)], extra) if m.group(1) in variables else _ref(m.group(1), extra)
                ),
                text,
            )
        if key == "Fn::GetAtt":
            return function_arn(arg[0]) if arg[1] == "Arn" else f"{arg[0]}.{arg[1]}"
        if key == "Fn::If":
            return resolve(arg[1] if condition(arg[0]) else arg[2], extra)
    if isinstance(value, dict):
        resolved = {k: resolve(v, extra) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}  # as CloudFormation drops them
    if isinstance(value, list):
        return [v for v in (resolve(v, extra) for v in value) if v is not NO_VALUE]
    return value


def _ref(name: str, extra: dict[str, str] | None) -> Any:
    if extra and name in extra:
        return extra[name]
    if name == "AWS::NoValue":
        return NO_VALUE
    if name.endswith(".Alias"):
        return function_alias_arn(name.removesuffix(".Alias"))
    pseudo = {
        "Stage": LOCAL_STAGE,
        "AWS::Region": LOCAL_REGION,
        "AWS::AccountId": LOCAL_ACCOUNT,
        "AWS::Partition": "aws",
        "AWS::StackName": "flowpilot-local",
    }
    if name in pseudo:
        return pseudo[name]
    params = load().get("Parameters", {})
    if name in params:
        return str(params[name].get("Default", ""))
    res = load()["Resources"][name]
    if res["Type"] == "AWS::StepFunctions::StateMachine" or res["Type"] == "AWS::Serverless::StateMachine":
        return f"arn:aws:states:{LOCAL_REGION}:{LOCAL_ACCOUNT}:stateMachine:{physical_name(name)}"
    return physical_name(name)


def functions() -> dict[str, Function]:
    glob = load().get("Globals", {}).get("Function", {})
    base_env = glob.get("Environment", {}).get("Variables", {})
    out = {}
    for name, res in resources("AWS::Serverless::Function").items():
        props = res["Properties"]
        env = {**base_env, **props.get("Environment", {}).get("Variables", {})}
        out[name] = Function(
            logical_id=name,
            code_dir=ROOT / props["CodeUri"],
            handler=props.get("Handler", "app.lambda_handler"),
            environment={k: str(resolve(v)) for k, v in env.items()},
        )
    return out


def routes() -> list[Route]:
    out = []
    for name, res in resources("AWS::Serverless::Function").items():
        for event in res["Properties"].get("Events", {}).values():
            if event["Type"] != "HttpApi":
                continue
            path, method = event["Properties"]["Path"], event["Properties"]["Method"].upper()
            regex = "^" + re.sub(r"\\\{([A-Za-z_]+)\\\}", r"(?P<\1>[^/]+)", re.escape(path)) + "$"
            out.append(Route(method=method, path=path, function=name, pattern=re.compile(regex)))
    return out


def match_route(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    for route in routes():
        if route.method == method.upper() and (m := route.pattern.match(path)):
            return route, m.groupdict()
    return None


def tables() -> dict[str, dict[str, Any]]:
    """create_table arguments for every DynamoDB table in the template, keyed by logical id."""
    out = {}
    for name, res in resources("AWS::DynamoDB::Table").items():
        props = resolve(res["Properties"])
        args: dict[str, Any] = {
            "TableName": props["TableName"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
        }
        if "GlobalSecondaryIndexes" in props:
            args["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        out[name] = {"create": args, "ttl": props.get("TimeToLiveSpecification")}
    return out
