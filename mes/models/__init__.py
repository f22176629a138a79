"""Every MES table, importable from one place (and registered on `mes.db.Base.metadata`)."""

from mes.models import guards as guards
from mes.models.audit import AuditEntry
from mes.models.parts import Lot, Part
from mes.models.people import AuthSession, Badge, Person, PersonRole, Station
from mes.models.processes import Process, ProcessStep, StepAction
from mes.models.production import ActionRecord, Genealogy, StepExecution, Unit, WorkOrder
from mes.models.quality import ESignature, Nonconformance

__all__ = [
    "ActionRecord",
    "AuditEntry",
    "AuthSession",
    "Badge",
    "ESignature",
    "Genealogy",
    "Lot",
    "Nonconformance",
    "Part",
    "Person",
    "PersonRole",
    "Process",
    "ProcessStep",
    "Station",
    "StepAction",
    "StepExecution",
    "Unit",
    "WorkOrder",
    "guards",
]
