"""Amazon EKS through boto3: VPC, IAM roles, EKS cluster, OIDC provider, managed node groups.

Credentials and endpoints are boto3's own: AWS_PROFILE / AWS_ACCESS_KEY_ID..., instance and container roles, SSO,
AWS_ENDPOINT_URL(_<SERVICE>). Everything qhubctl creates carries the tag `qhub.dev/project=<project_name>`, and IAM
roles live under the path `/qhub/<project_name>/`, so plan and destroy find them without a state file.

NetworkPolicies are enforced by the VPC CNI's network policy agent: the vpc-cni managed add-on with
enableNetworkPolicy (providers.eks_netpol), created right after the cluster and before any node group.
Both managed add-ons (vpc-cni, aws-ebs-csi-driver) are pinned to EKS's default version for the Kubernetes version
(providers.eks_addon_versions): `plan` for the config's version, `addon_plan` (`qhubctl upgrade`) for the version
the cluster runs.

One module per concern; this one plans, and carries plans out through the two dispatch tables below:
- `errors`: botocore failures as messages (explain, aws_errors)
- `account`: clients, QHub's tags and names, what was observed
- `network`: VPC, subnets, internet and NAT gateways, route tables (when `cluster.subnet_ids` is empty)
- `iam`: cluster and node roles, the IRSA roles of cluster-autoscaler and the EBS CSI driver, the OIDC provider lookup
- `eks`: the cluster, its endpoint, version upgrades, the OIDC provider, the kubeconfig
- `groups`: managed node groups in the private subnets with cluster-autoscaler's auto-discovery and
  scale-from-zero tags; the IRSA role `<project>-cluster-autoscaler` and `addon_facts()` let the cluster add-on
  release (qhubctl.addons) run cluster-autoscaler for them
- `ebs_csi`: the EKS managed add-on aws-ebs-csi-driver with its IRSA role (volumes; the add-on release adds the
  default gp3 StorageClass)
- `teardown`: what Kubernetes made for the cluster (load balancers, volumes, security groups)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qhubctl.config.model import QHubConfig
from qhubctl.errors import QHubError
from qhubctl.providers import eks_addon_versions, eks_netpol
from qhubctl.providers.aws import ebs_csi, eks, groups, iam, network, teardown
from qhubctl.providers.aws.account import Account, Observed
from qhubctl.providers.aws.eks import public_cidrs
from qhubctl.providers.aws.errors import aws_errors, explain
from qhubctl.providers.aws.network import subnet_layout
from qhubctl.providers.aws.groups import ami_type, autoscaler_tags
from qhubctl.providers.base import Action, AddonFacts, Log, Plan, Provider, desired_groups

# (op, kind) of a plan's action -> what carries it out. Node groups and the VPC CNI add-on are applied apart:
# they need the desired group, or the eks_netpol module's own arguments. The other "eks-addon" is the EBS CSI
# driver's.
APPLY: dict[tuple[str, str], Callable[[Account, Action], None]] = {
    ("create", "vpc"): network.create_vpc,
    ("create", "internet-gateway"): network.create_internet_gateway,
    ("create", "subnet"): network.create_subnet,
    ("create", "nat-gateway"): network.create_nat_gateway,
    ("create", "route-table"): network.create_route_table,
    ("create", "iam-role"): iam.put_role,
    ("update", "iam-role"): iam.put_role,
    ("create", "eks-cluster"): eks.create_cluster,
    ("update", "eks-cluster"): eks.upgrade_cluster,
    ("update", "eks-endpoint"): eks.update_endpoint,
    ("create", "oidc-provider"): eks.create_oidc_provider,
    ("create", ebs_csi.KIND): ebs_csi.apply,
    ("update", ebs_csi.KIND): ebs_csi.apply,
}

# kind of a destroy plan's action -> what deletes the resource of that name (or id, or ARN).
DESTROY: dict[str, Callable[[Account, str], None]] = {
    "load-balancer": teardown.delete_load_balancer,
    "classic-load-balancer": teardown.delete_classic_load_balancer,
    "nodegroup": groups.delete_group,
    "ebs-volume": teardown.delete_ebs_volume,
    "security-group": teardown.delete_security_group,
    "eks-cluster": eks.delete_cluster,
    "oidc-provider": iam.delete_oidc_provider,
    "iam-role": iam.delete_role,
    "nat-gateway": network.delete_nat_gateway,
    "elastic-ip": network.delete_elastic_ip,
    "route-table": network.delete_route_table,
    "internet-gateway": network.delete_internet_gateway,
    "subnet": network.delete_subnet,
    "vpc": network.delete_vpc,
}


class AWS(Provider):
    name = "aws"
    managed_addons = (eks_netpol.ADDON, ebs_csi.ADDON)

    def __init__(self, cfg: QHubConfig, log: Log = print) -> None:
        super().__init__(cfg, log)
        self.account = Account(cfg, log)
        self.region = self.account.region

    @aws_errors
    def check_credentials(self) -> str:
        who = self.account.client("sts").get_caller_identity()
        return f"account {who['Account']} as {who['Arn']} in {self.region}"

    def observe(self) -> Observed:
        seen = Observed()
        network.observe(self.account, seen)
        iam.observe(self.account, seen)
        eks.observe(self.account, seen)
        if seen.cluster:
            groups.observe(self.account, seen)
        return seen

    @aws_errors
    def plan(self) -> Plan:
        seen = self.observe()
        # the add-ons' versions for the config's Kubernetes version: the plan upgrades the cluster before them
        kubernetes_version = self.cfg.cluster.kubernetes_version
        want = self._addon_versions(kubernetes_version)
        return Plan(self.name, self.cluster_name, self.plan_actions(seen, want),
                    self._addon_notes(seen, want, kubernetes_version))

    def plan_actions(self, seen: Observed, want: dict[str, str]) -> list[Action]:
        acc = self.account
        actions = network.plan(acc, seen)
        for short in iam.BASE_ROLES:
            actions += iam.role_actions(acc, seen, short)
        actions += eks.plan(acc, seen)
        actions += eks_netpol.plan_actions(seen.addon, want[eks_netpol.ADDON])  # before any node joins
        for short in iam.IRSA_ROLES:  # each trusts the OIDC provider planned above
            actions += iam.role_actions(acc, seen, short)
        actions += groups.plan(acc, seen)
        return actions + ebs_csi.plan(acc, seen, want[ebs_csi.ADDON])  # its controller runs on a node

    @aws_errors
    def addon_plan(self) -> Plan:
        """Updates of the managed add-ons only (their versions, and settings changed by hand), with the versions
        for the Kubernetes version the cluster runs now, so EKS takes them before the cluster is upgraded. Nothing
        without a cluster, and no add-on created: that is `cluster create`'s."""
        seen = Observed()
        eks.observe(self.account, seen)
        if not seen.cluster:
            return Plan(self.name, self.cluster_name)
        running, asked = seen.cluster["version"], self.cfg.cluster.kubernetes_version
        if running != asked:
            self.log(f"cluster {self.cluster_name} runs Kubernetes {running}, the config asks for {asked}: add-on "
                     f"versions here are those for {running}; `qhubctl cluster create` upgrades the cluster, then "
                     "its add-ons")
        want = self._addon_versions(running)
        actions = eks_netpol.plan_actions(seen.addon, want[eks_netpol.ADDON])
        actions += ebs_csi.plan(self.account, seen, want[ebs_csi.ADDON])
        return Plan(self.name, self.cluster_name, [a for a in actions if a.op == "update"],
                    self._addon_notes(seen, want, running))

    def _addon_versions(self, kubernetes_version: str) -> dict[str, str]:
        eks_client = self.account.client("eks")
        return {name: eks_addon_versions.wanted(eks_client, name, kubernetes_version) for name in self.managed_addons}

    def _addon_notes(self, seen: Observed, want: dict[str, str], kubernetes_version: str) -> list[str]:
        """The plan's notes on the installed add-ons' versions (one newer than EKS's default is left as it is)."""
        installed = {eks_netpol.ADDON: seen.addon, ebs_csi.ADDON: seen.ebs_addon}
        notes = (eks_addon_versions.note(name, installed[name], want[name], kubernetes_version)
                 for name in self.managed_addons)
        return [line for line in notes if line]

    @aws_errors
    def apply(self, plan: Plan) -> None:
        specs = {s.name: s for s in desired_groups(self.cfg)}
        for action in plan.actions:
            self.log("  " + action.lines()[0])
            if action.kind == "nodegroup":
                groups.apply(self.account, action, specs.get(action.name))
            elif action.kind == eks_netpol.KIND and action.name == eks_netpol.ADDON:
                eks_netpol.apply(self.account.client("eks"), self.cluster_name, action, self.account.tags, self.log)
            else:
                _handler(APPLY, (action.op, action.kind))(self.account, action)

    @aws_errors
    def destroy_plan(self) -> Plan:
        """Everything of the cluster, in the order it can be deleted: what Kubernetes made first, the network
        last."""
        acc = self.account
        seen = self.observe()
        vpc_id = seen.vpc["VpcId"] if seen.vpc else None
        actions = teardown.load_balancer_actions(acc)
        actions += [Action("delete", "nodegroup", name) for name in seen.groups]
        actions += teardown.volume_and_security_group_actions(acc, vpc_id)
        if seen.cluster:
            actions.append(Action("delete", "eks-cluster", self.cluster_name))
        actions += iam.destroy_plan(acc, seen)
        actions += network.destroy_plan(acc, seen)
        return Plan(self.name, self.cluster_name, actions)

    @aws_errors
    def destroy(self, plan: Plan) -> None:
        for action in plan.actions:
            self.log("  " + action.lines()[0])
            _handler(DESTROY, action.kind)(self.account, action.name)

    @aws_errors
    def kubeconfig(self) -> dict[str, Any]:
        return eks.kubeconfig(self.account)

    @aws_errors
    def addon_facts(self) -> AddonFacts:
        """cluster-autoscaler's IRSA role for the add-on release; auto-discovery needs the cluster's name and
        region."""
        role = iam.role_arn(self.account, iam.AUTOSCALER_ROLE)
        return AddonFacts(self.cluster_name, self.region, {iam.AUTOSCALER_ROLE: role})


def _handler(table: dict[Any, Callable[[Account, Any], None]], key: Any) -> Callable[[Account, Any], None]:
    try:
        return table[key]
    except KeyError:
        raise QHubError(f"qhubctl's AWS provider has no step for {key}",
                        hint="report this: the plan holds an action the provider cannot carry out") from None


__all__ = ["AWS", "ami_type", "autoscaler_tags", "explain", "public_cidrs", "subnet_layout"]
