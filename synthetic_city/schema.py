"""The contract of docs/synthetic-city.md as data: every agency, dataset and column, with its type,
class, description and allowed values.

Both the Arrow schemas the writer uses and the manifests the node agents load are derived from
this one table, so the files and their manifests cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from datalab.manifest import AgencyManifest, ColumnClass, ColumnSpec, ColumnType, DatasetSpec

I, Q, S, P = (  # noqa: E741 - the letters of the contract table
    ColumnClass.IDENTIFIER,
    ColumnClass.QUASI_IDENTIFIER,
    ColumnClass.SENSITIVE,
    ColumnClass.PUBLIC,
)

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "integer": pa.int32(),
    "float": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("ms"),  # Parquet has no seconds unit
}

AGE_BANDS = ("0-14", "15-24", "25-44", "45-59", "60-79", "80+")
FLAG_TYPES = ("missed_registration", "should_cancel", "separation")


@dataclass(frozen=True)
class Col:
    name: str
    type: ColumnType
    klass: ColumnClass
    description: str
    geo: bool = False
    values: tuple[str, ...] | None = None

    def spec(self) -> ColumnSpec:
        return ColumnSpec.model_validate(
            {
                "name": self.name,
                "type": self.type,
                "class": self.klass,
                "description": self.description,
                "geo_level": "grid" if self.geo else None,
                "values": list(self.values) if self.values else None,
            }
        )


@dataclass(frozen=True)
class Dataset:
    agency: str
    name: str
    kind: str
    description: str
    columns: tuple[Col, ...]

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, ARROW_TYPES[c.type]) for c in self.columns])

    def spec(self, path: str, fmt: str, rows: int) -> DatasetSpec:
        return DatasetSpec.model_validate(
            {
                "name": self.name,
                "kind": self.kind,
                "path": path,
                "format": fmt,
                "rows": rows,
                "description": self.description,
                "columns": [c.spec().model_dump(by_alias=True) for c in self.columns],
            }
        )


def _id(name: str, what: str) -> Col:
    return Col(name, "string", I, what)


SEX_MF = ("M", "F")

REGISTRATIONS = Dataset(
    "public_security",
    "registrations",
    "population_registration",
    "Household (local) and floating-population (migrant) registrations, active and cancelled.",
    (
        _id("id_number", "National ID, 18 characters, upper-case X."),
        _id("name", "Registered name."),
        Col("sex", "string", Q, "Sex.", values=SEX_MF),
        Col("birth_date", "date", Q, "Birth date."),
        Col("reg_type", "string", P, "household = local hukou; floating = migrant registration.",
            values=("household", "floating")),
        Col("reg_grid", "string", Q, "Grid of the registered address.", geo=True),
        Col("registered_on", "date", P, "Date the registration was made."),
        Col("status", "string", P, "Registration status on the extract date.",
            values=("active", "cancelled")),
        Col("cancelled_on", "date", P, "Cancellation date; null while active."),
    ),
)  # fmt: skip

TENANCY = Dataset(
    "housing",
    "tenancy_contracts",
    "tenancy",
    "Filed residential tenancy contracts (current and past).",
    (
        _id("contract_id", "Contract number."),
        _id("tenant_id_number", "Tenant's national ID as typed: often lower-case x, some missing."),
        _id("tenant_name", "Tenant's name."),
        Col("tenant_sex", "string", Q, "Tenant's sex (男 male / 女 female).", values=("男", "女")),
        Col("tenant_birth_date", "string", Q, "Tenant's birth date as text YYYY/MM/DD."),
        Col("grid", "string", Q, "Grid of the rented dwelling.", geo=True),
        Col("start_date", "date", P, "Contract start."),
        Col("end_date", "date", P, "Contract end; null = open-ended."),
        Col("monthly_rent", "float", S, "Monthly rent in yuan."),
    ),
)

EMPLOYMENT = Dataset(
    "hrss",
    "employment",
    "employment",
    "Formal employment relations known to human resources and social security.",
    (
        _id("id_number", "Employee's national ID."),
        _id("name", "Employee's name."),
        Col("sex", "string", Q, "Sex (1 male / 2 female).", values=("1", "2")),
        Col("birth_date", "string", Q, "Birth date as text YYYYMMDD."),
        Col("employer_id", "string", P, "Employer registration number."),
        Col("employer_grid", "string", Q, "Grid of the employer's workplace.", geo=True),
        Col("start_date", "date", P, "Employment start."),
        Col("end_date", "date", P, "Employment end; null = current."),
    ),
)

CONTRIBUTIONS = Dataset(
    "hrss",
    "contributions",
    "social_insurance_contributions",
    "Monthly social-insurance contributions paid for employees.",
    (
        _id("id_number", "Employee's national ID."),
        Col("month", "string", P, "Contribution month YYYY-MM."),
        Col("employer_grid", "string", Q, "Grid of the paying employer.", geo=True),
        Col("amount", "float", S, "Amount paid in yuan."),
    ),
)

HEALTH_RECORDS = Dataset(
    "health",
    "health_records",
    "health_conditions",
    "Registered chronic illness, disability and pregnancy records.",
    (
        _id("id_number", "National ID; some missing."),
        _id("name", "Name."),
        Col("sex", "string", Q, "Sex.", values=SEX_MF),
        Col("birth_date", "date", Q, "Birth date."),
        Col("residence_grid", "string", Q, "Residence grid when recorded.", geo=True),
        Col("condition", "string", P, "Recorded condition.",
            values=("chronic_illness", "disability", "pregnancy")),
        Col("recorded_on", "date", P, "Date recorded."),
    ),
)  # fmt: skip

DEATHS = Dataset(
    "health",
    "deaths",
    "death_registrations",
    "Medical death certificates.",
    (
        _id("id_number", "National ID of the deceased."),
        _id("name", "Name."),
        Col("sex", "string", Q, "Sex.", values=SEX_MF),
        Col("birth_date", "date", Q, "Birth date."),
        Col("death_date", "date", P, "Date of death."),
        Col("grid", "string", Q, "Grid of last residence.", geo=True),
    ),
)

BENEFITS = Dataset(
    "civil_affairs",
    "benefits",
    "benefit_recipients",
    "Current recipients of elderly and disability allowances (paid where registered).",
    (
        _id("id_number", "Recipient's national ID."),
        _id("name", "Name."),
        Col("sex", "string", Q, "Sex.", values=SEX_MF),
        Col("birth_date", "date", Q, "Birth date."),
        Col("grid", "string", Q, "Grid of the recipient's registered household.", geo=True),
        Col("benefit", "string", P, "Allowance.",
            values=("elderly_allowance", "disability_allowance")),
        Col("since", "date", P, "First payment date."),
    ),
)  # fmt: skip

ACTIVITY = Dataset(
    "activity",
    "activity_events",
    "activity_events",
    "Activity events (person, time, place, activity) from telecom/utility-like sources.",
    (
        _id("person_id", "National ID of the person seen; some missing."),
        Col("event_time", "timestamp", P, "When (local time)."),
        Col("grid", "string", Q, "Where.", geo=True),
        Col("activity", "string", P, "What.", values=("home", "work", "leisure", "transit")),
        Col("period", "string", P, "day (07-19h) or night (19-07h).", values=("day", "night")),
    ),
)

ENROLMENT = Dataset(
    "education",
    "school_enrolment",
    "school_enrolment",
    "Primary and secondary school enrolment with parents' IDs.",
    (
        _id("student_id_number", "Student's national ID."),
        _id("student_name", "Student's name."),
        Col("sex", "string", Q, "Sex.", values=SEX_MF),
        Col("birth_date", "date", Q, "Birth date."),
        Col("school_grid", "string", Q, "Grid of the school.", geo=True),
        Col("grade", "integer", P, "Grade 1-12."),
        _id("parent1_id_number", "A parent's national ID (mother where known)."),
        _id("parent2_id_number", "The other parent's national ID; null when not recorded."),
        Col("enrolled_on", "date", P, "Enrolment date."),
    ),
)

POPULATION = Dataset(
    "district",
    "population",
    "district_population",
    "The district's actual (in-city, living) population by home grid.",
    (
        _id("id_number", "National ID."),
        Col("sex", "string", P, "Sex.", values=SEX_MF),
        Col("age", "integer", Q, "Age in completed years on the reference date."),
        Col("age_band", "string", P, "Age band.", values=AGE_BANDS),
        Col("grid", "string", Q, "Home grid.", geo=True),
        Col("is_migrant", "boolean", P, "Household registered outside the city."),
        Col("employed", "boolean", P, "Has a job (formal or not)."),
        Col("monthly_income", "float", S, "Monthly income in yuan (0 when not employed)."),
        Col("household_size", "integer", S, "People in the household."),
    ),
)

VERIFICATION = Dataset(
    "district",
    "verification_outcomes",
    "verification_outcomes",
    "Outcomes of a past campaign in which grid workers checked flagged people on the spot.",
    (
        _id("flag_id", "Campaign flag number."),
        _id("id_number", "National ID of the flagged person."),
        Col("flag_type", "string", P, "What was suspected.", values=FLAG_TYPES),
        Col("grid", "string", Q, "Grid the flag concerns.", geo=True),
        Col("nights_seen_30d", "integer", P, "Nights seen in the grid in the 30 days before."),
        Col("has_tenancy", "boolean", P, "A tenancy contract in the grid was on file."),
        Col("contribution_months_12", "integer", P, "Months of contributions in the last 12."),
        Col("age", "integer", S, "Age of the flagged person."),
        Col("is_migrant", "boolean", P, "Household registered outside the city."),
        Col("days_since_reg_update", "integer", S,
            "Days since the person's registration record last changed."),
        Col("confirmed", "boolean", S, "The grid worker confirmed the suspicion."),
    ),
)  # fmt: skip

#: agency folder → (title, description, datasets)
AGENCIES: dict[str, tuple[str, str, tuple[Dataset, ...]]] = {
    "public_security": (
        "Public Security Bureau",
        "Household registration and floating-population registration.",
        (REGISTRATIONS,),
    ),
    "housing": ("Housing Bureau", "Filed tenancy contracts.", (TENANCY,)),
    "hrss": (
        "Human Resources and Social Security Bureau",
        "Employment and monthly social-insurance contributions.",
        (EMPLOYMENT, CONTRIBUTIONS),
    ),
    "health": (
        "Health Commission",
        "Chronic illness, disability, pregnancy and deaths.",
        (HEALTH_RECORDS, DEATHS),
    ),
    "civil_affairs": ("Civil Affairs Bureau", "Elderly and disability allowances.", (BENEFITS,)),
    "activity": (
        "Activity data (telecom and utilities)",
        "Dynamic population events: person, time, place, activity.",
        (ACTIVITY,),
    ),
    "education": ("Education Bureau", "School enrolment.", (ENROLMENT,)),
}

DISTRICT_DATASETS = (POPULATION, VERIFICATION)


def district_folder(code: str) -> str:
    return f"district_{code}"


def manifest(
    agency: str, title: str, description: str, specs: list[DatasetSpec], generated_by: str
) -> AgencyManifest:
    return AgencyManifest(
        agency=agency,
        title=title,
        description=description,
        generated_by=generated_by,
        datasets=specs,
    )
