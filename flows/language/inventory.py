"""The inventory: where the things a playbook names actually are.

A playbook says "pause vault with signer guardian"; the inventory says which chain, which
address, which RPC (by environment variable) and which key source. The same playbook runs
live and in a drill with another inventory. An inventory is live unless it says ``mode: drill``.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from breakglass.flows.language.pausespec import PausedSpec, PauseSpec
from breakglass.flows.language.types import Address, Duration, Model, Name, check_address
from breakglass.integrations.alerts import ADAPTERS, AlertKind
from breakglass.integrations.chain import batching
from breakglass.integrations.notify import CHANNELS, ChannelKind

CANONICAL_MULTICALL3 = "0xcA11bde05977b3631167028862bE2a173976CA11"
FIXTURE_RE = re.compile(r"^fixture:([a-z][a-z0-9_-]{0,63})$")
ENV_RE = re.compile(r"^[A-Z_][A-Z0-9_]{0,127}$")


def _address_or_fixture(value: str) -> str:
    if isinstance(value, str) and FIXTURE_RE.fullmatch(value):
        return value
    return check_address(value)


def _env_name(value: str) -> str:
    if not isinstance(value, str) or not ENV_RE.fullmatch(value):
        raise ValueError("must be an environment variable name such as ETH_RPC_URL (A-Z, 0-9, _)")
    return value


AddressOrFixture = Annotated[str, AfterValidator(_address_or_fixture)]
EnvName = Annotated[str, AfterValidator(_env_name)]


class RpcEndpoint(Model):
    """One RPC endpoint, by reference: RPC URLs often embed API keys, so they are never written here."""

    env: EnvName | None = Field(None, description="environment variable holding the RPC URL")
    fixture: Literal["anvil"] | None = Field(None, description="drill only: the anvil that the drill started")

    @model_validator(mode="after")
    def _exactly_one(self) -> RpcEndpoint:
        if (self.env is None) == (self.fixture is None):
            raise ValueError("give exactly one of 'env' (live) or 'fixture' (drill)")
        return self

    @property
    def label(self) -> str:
        return f"env:{self.env}" if self.env else f"fixture:{self.fixture}"


class Fees(Model):
    """Fee policy for emergency transactions: a cap that automatic re-pricing never crosses."""

    max_fee_gwei: float = Field(gt=0, description="cap on maxFeePerGas; a bump never goes above it")
    priority_fee_gwei: float = Field(2.0, ge=0, description="initial maxPriorityFeePerGas")
    priority_cap_gwei: float | None = Field(None, gt=0, description="cap on maxPriorityFeePerGas (default: max_fee_gwei)")
    bump_after_blocks: int = Field(3, ge=1, le=100, description="blocks without inclusion before replacing at the same nonce")
    bump_percent: float = Field(12.5, ge=12.5, le=200, description="fee increase per replacement (at least 12.5)")


class RpcLimits(Model):
    """What one request to the chain's RPC may carry. Batch reads (snapshots, role reads, freshness checks)
    are split to fit; a refusal beyond them is learned for the rest of the run. See docs/language.md."""

    batch_max: int = Field(batching.DEFAULT.batch_max, ge=1, le=10_000, description="requests per JSON-RPC batch")
    body_max_bytes: int = Field(batching.DEFAULT.body_max_bytes, ge=10_000, le=100_000_000,
                                description="bytes per HTTP request body")
    call_gas_max: int = Field(batching.DEFAULT.call_gas_max, ge=1_000_000, le=10_000_000_000,
                              description="gas one eth_call may use; sizes Multicall3 chunks")
    in_flight: int = Field(batching.DEFAULT.in_flight, ge=1, le=32, description="batches sent at once")

    def runtime(self) -> batching.Limits:
        return batching.Limits(self.batch_max, self.body_max_bytes, self.call_gas_max, self.in_flight)


class Chain(Model):
    chain_id: int = Field(gt=0)
    block_time: Duration = Field(description="expected seconds between blocks")
    rpc: list[RpcEndpoint] = Field(min_length=1, description="read endpoints in failover order")
    submit: list[RpcEndpoint] = Field(default_factory=list, description="private submission endpoints for broadcasts (reads never go there)")
    fees: Fees = Field(default_factory=lambda: Fees(max_fee_gwei=500), description="fee policy for emergency transactions")
    multicall3: AddressOrFixture = Field(CANONICAL_MULTICALL3, description="Multicall3 address; reads fall back to JSON-RPC batches where absent")
    explorer: str | None = Field(None, description="block explorer base URL, for links in reports")
    rpc_limits: RpcLimits = Field(default_factory=RpcLimits, description="what one request to these RPCs may carry")


class Contract(Model):
    chain: Name
    address: AddressOrFixture
    interface: Name | None = Field(None, description="artifact name in contracts/artifacts, for decoding")
    guardian: Name | None = Field(None, description="the signer expected to be able to pause it (checked by `breakglass check`)")
    pause: PauseSpec = Field("pause()", description="the function that pauses it: a signature without arguments, "
                             "{function: 'pause(string)', args: [...]}, or a list of them (each sent exactly once)")
    paused: PausedSpec = Field("paused()", description="the view that says whether it is paused: a signature, "
                               "{view: ..., args: [...], result: N, paused_when: {equals: N} | {bits: MASK}}, or a list "
                               "(paused only when every view says so)")


class EnvSigner(Model):
    kind: Literal["env"]
    address: Address
    env: EnvName = Field(description="environment variable holding the hex private key")


class KeystoreSigner(Model):
    kind: Literal["keystore"]
    address: Address
    path: str = Field(description="path to an eth-account JSON keystore")
    password_env: EnvName | None = Field(None, description="environment variable with the password; prompt when absent")


class ExternalSigner(Model):
    kind: Literal["external"]
    address: Address
    url_env: EnvName = Field(description="environment variable with the remote signer's JSON-RPC URL")


class FixtureSigner(Model):
    kind: Literal["fixture"]
    account: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$")] = Field(description="drill only: a fixture account")


class ImpersonatedSignerSpec(Model):
    """Fork drills only (written by `breakglass drill --fork-url`): a live signer's address, impersonated on the
    local anvil fork, so the real deployment's pause path runs without any key."""

    kind: Literal["impersonated"]
    address: Address


class SafeSigner(Model):
    """A Safe multisig that holds the guardian role. breakglass proposes, collects owner signatures
    (from the owner signers it holds, and from `breakglass sign`), and executes once the threshold is met."""

    kind: Literal["safe"]
    address: AddressOrFixture
    chain: Name
    owners: list[Name] = Field(default_factory=list, description="owner signers this installation holds (may be none)")
    executor: Name = Field(description="the signer that submits execTransaction and pays its gas")


Signer = Annotated[EnvSigner | KeystoreSigner | ExternalSigner | FixtureSigner | SafeSigner | ImpersonatedSignerSpec,
                   Field(discriminator="kind")]


class ContactChannel(Model):
    """One way to reach a contact: a transport from ``channels:`` and the address on it."""

    via: Name = Field(description="a channel (transport) name from channels:")
    to: str | list[str] | None = Field(None, description="Slack channel, email address(es), Telegram chat id; none for webhooks and the outbox")

    @property
    def address(self) -> str:
        return ", ".join(self.to) if isinstance(self.to, list) else (self.to or "")


class Contact(Model):
    kind: Literal["exchange", "bridge", "issuer", "partner", "internal"]
    channels: list[ContactChannel] = Field(min_length=1, description="in priority order: the first that works is used")
    chains: list[Name] = Field(default_factory=list, description="chains it covers (empty: all)")
    last_verified: date


class Channel(Model):
    """A transport. Secrets come from environment variables, by name."""

    kind: ChannelKind
    token_env: EnvName | None = Field(None, description="slack, telegram: the bot token")
    base_url: str | None = Field(None, description="slack, telegram: API base URL (default: the public one)")
    host: str | None = Field(None, description="email: SMTP server")
    port: int = Field(587, ge=1, le=65535, description="email: SMTP port")
    sender: str | None = Field(None, description="email: From address")
    username_env: EnvName | None = None
    password_env: EnvName | None = None
    starttls: Literal["auto", "always", "never"] = Field("auto", description="email: STARTTLS whenever offered by default")
    url_env: EnvName | None = Field(None, description="webhook: the URL")
    secret_env: EnvName | None = Field(None, description="webhook: the HMAC-SHA256 signing secret")
    per_channel_interval: Duration = Field(1.0, description="slack: at most one message per this interval per channel")

    @model_validator(mode="after")
    def _fields_for_kind(self) -> Channel:
        missing = [f for f in CHANNELS[self.kind].needs if getattr(self, f) is None]  # each transport says
        if missing:
            raise ValueError(f"a {self.kind} channel needs {', '.join(missing)}")
        return self


class TemplatePolicy(Model):
    approved: bool = Field(False, description="pre-approved wording (SEAL): may go to external counterparties without a gate")


class Person(Model):
    slack: str | None = Field(None, description="Slack user id (U...), for approvals in Slack")
    address: AddressOrFixture | None = Field(None, description="the address whose EIP-712 signature is this person's vote")


class Roster(Model):
    people: dict[Name, Person] = Field(default_factory=dict)
    groups: dict[Name, list[Name]] = Field(default_factory=dict)


class SlackApp(Model):
    """The Slack app that carries gate messages and Approve/Reject buttons (served by `breakglass serve`)."""

    channel: Name = Field(description="a channels: entry of kind slack (bot token, base URL)")
    post_to: str = Field(description="the war-room Slack channel id where gate messages go")
    signing_secret_env: EnvName = Field(description="environment variable with the app's signing secret")
    app_id: str = Field(description="the app id every click must carry (api_app_id)")
    team_id: str = Field(description="the workspace id every click must come from")
    app_token_env: EnvName | None = Field(None, description="Socket Mode: environment variable with the xapp- token")


class Paging(Model):
    """PagerDuty Events API v2: page the roster while a gate waits for its quorum, then the backup."""

    url: str = Field("https://events.pagerduty.com/v2/enqueue", description="Events API v2 endpoint")
    routing_key_env: EnvName = Field(description="environment variable with the integration's routing key")
    backup_routing_key_env: EnvName | None = Field(None, description="the backup group's routing key, for continued silence")
    after: Duration = Field(120, description="page when no approver has acted this long after a gate opens")
    backup_after: Duration = Field(300, description="then page the backup if the gate still waits this much later")
    page_on: list[Literal["info", "low", "medium", "high", "critical"]] = Field(
        default_factory=list, description="also page when an alert opens an incident whose playbook has one of these "
                                          "severities, e.g. [critical]")


class AlertSource(Model):
    """One inbound alert URL of `serve` (``/alerts/<name>``): which adapter parses it and how it is authenticated."""

    kind: AlertKind
    secret_env: EnvName | None = Field(None, description="oz-monitor, defender, tenderly: the HMAC secret")
    token_env: EnvName | None = Field(None, description="alertmanager, generic: a bearer token")
    username_env: EnvName | None = Field(None, description="alertmanager, generic: basic auth user")
    password_env: EnvName | None = Field(None, description="alertmanager, generic: basic auth password")
    scanners: list[Address] = Field(default_factory=list, description="forta: scan node addresses whose JWTs are accepted")
    dedupe_window: Duration = Field(600, description="alerts with the same dedupe key within this window join the first")

    @model_validator(mode="after")
    def _credentials(self) -> AlertSource:
        problem = ADAPTERS[self.kind].credentials.problem(self)  # each adapter says what it needs
        if problem:
            raise ValueError(problem)
        return self


class Inventory(Model):
    apiVersion: Literal["breakglass/v1"]
    kind: Literal["Inventory"]
    name: Name
    description: str = ""
    mode: Literal["live", "drill"] = Field("live", description="live unless it says drill: forgetting fails safe")
    chains: dict[Name, Chain] = Field(default_factory=dict)
    contracts: dict[Name, Contract] = Field(default_factory=dict)
    signers: dict[Name, Signer] = Field(default_factory=dict)
    contacts: dict[Name, Contact] = Field(default_factory=dict)
    groups: dict[Name, list[Name]] = Field(default_factory=dict, description="counterparty groups")
    channels: dict[Name, Channel] = Field(default_factory=dict)
    templates: dict[Name, TemplatePolicy] = Field(default_factory=dict, description="message templates and their approval")
    reply_contact: str = Field("", description="24/7 contact counterparties reply to, quoted in messages")
    roster: Roster = Field(default_factory=Roster)
    slack_app: SlackApp | None = None
    paging: Paging | None = None
    alert_sources: dict[Name, AlertSource] = Field(default_factory=dict, description="inbound alert URLs of `serve`")
    never_correlate: dict[Name, Address] = Field(
        default_factory=dict, description="addresses that never join alerts into one incident, by name: routers, "
                                          "tokens, bridges that unrelated attacks have in common")

    @property
    def is_drill(self) -> bool:
        return self.mode == "drill"

    def names(self, category: str) -> set[str]:
        if category == "approver":
            return set(self.roster.people) | set(self.roster.groups)
        if category == "contact":
            return set(self.contacts) | set(self.groups)
        return set(getattr(self, {"contract": "contracts", "signer": "signers", "chain": "chains", "channel": "channels"}[category]))


def recipients(inventory: Inventory, names: list[str], chains: list[str]) -> list[str]:
    """Contacts by name or group, optionally only those covering one of ``chains``; sorted, once each."""
    out: set[str] = set()
    for name in names:
        members = inventory.groups.get(name, [name])
        for member in members:
            contact = inventory.contacts[member]
            if chains and contact.chains and not set(chains) & set(contact.chains):
                continue
            out.add(member)
    return sorted(out)
