"""The database domains: schemas with natural-language annotations, and seeded data generators.

Each :class:`Domain` declares its tables (types in a small logical vocabulary that maps to both
SQLite and PostgreSQL), which columns the question templates may use and how to say them, and a
generator that fills the tables from a ``random.Random``. Same seed, same rows, on any machine.

Train suites use ``shop``, ``university`` and ``hospital``; the held-out ``test`` suite uses
``flights`` and ``library``, whose schemas the train suites never show.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass, field
from typing import Callable

# logical type -> (SQLite type, PostgreSQL type)
TYPES = {
    "int": ("INTEGER", "INTEGER"),
    "text": ("TEXT", "TEXT"),
    "real": ("REAL", "DOUBLE PRECISION"),
    "money": ("REAL", "NUMERIC(10,2)"),
    "date": ("DATE", "DATE"),
}


@dataclass(frozen=True)
class Col:
    """A column. ``role`` tells the templates how to use it: ``cat`` (filter and group by a
    value), ``num`` (compare, aggregate, rank), ``date`` (filter by year); ``label`` is how a
    question names it."""

    name: str
    type: str
    pk: bool = False
    ref: str | None = None  # "table.column"
    nullable: bool = False
    role: str | None = None
    label: str = ""

    @property
    def phrase(self) -> str:
        return self.label or self.name.replace("_", " ")


@dataclass(frozen=True)
class Table:
    """A table; ``show`` are the columns a question asks for when it asks for "the X of the Ys"."""

    name: str
    noun: str
    plural: str
    columns: tuple[Col, ...]
    show: tuple[str, ...]
    show_phrase: str

    @property
    def pk(self) -> Col:
        return next(c for c in self.columns if c.pk)

    def col(self, name: str) -> Col:
        return next(c for c in self.columns if c.name == name)


@dataclass(frozen=True)
class Domain:
    name: str
    description: str
    tables: tuple[Table, ...]
    generate: Callable[[random.Random], dict[str, list[tuple]]] = field(repr=False)

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)


def ddl(table: Table, dialect: str) -> str:
    """``CREATE TABLE`` for ``dialect`` (``sqlite`` or ``postgres``), with keys."""
    idx = 0 if dialect == "sqlite" else 1
    lines = []
    for c in table.columns:
        line = f"  {c.name} {TYPES[c.type][idx]}"
        if c.pk:
            line += " PRIMARY KEY"
        elif not c.nullable:
            line += " NOT NULL"
        lines.append(line)
    for c in table.columns:
        if c.ref:
            t, col = c.ref.split(".")
            lines.append(f"  FOREIGN KEY ({c.name}) REFERENCES {t} ({col})")
    return f"CREATE TABLE {table.name} (\n" + ",\n".join(lines) + "\n)"


# ----- shared value pools ------------------------------------------------------------------------
FIRST = ("James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara Richard Susan "
         "Joseph Jessica Thomas Sarah Charles Karen Daniel Nancy Matthew Lisa Anthony Betty Mark Sandra Paul "
         "Ashley Steven Emily Andrew Donna Kenneth Michelle Joshua Carol Kevin Amanda Brian Melissa George "
         "Deborah Timothy Stephanie Ronald Rebecca Jason Laura Edward Helen Jeffrey Sharon Ryan Cynthia Jacob "
         "Kathleen Gary Amy Nicholas Angela Eric Anna Jonathan Ruth Stephen Brenda Larry Pamela Justin Nicole "
         "Scott Samantha Brandon Katherine Benjamin Emma Samuel Christine Gregory Debra Alexander Rachel Frank "
         "Carolyn Patrick Janet Raymond Maria Jack Olivia Dennis Heather Jerry Diane Tyler Julie Aaron Joyce "
         "Amir Fatima Hiroshi Yuki Wei Mei Carlos Sofia Lucas Ingrid Omar Leila Pierre Chloe Mateo Elena").split()
LAST = ("Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez "
        "Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark "
        "Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams "
        "Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips Evans Turner Diaz Parker "
        "Cruz Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper "
        "Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson Watson Brooks Chavez Wood James "
        "Bennett Gray Mendoza Ruiz Hughes Price Alvarez Castillo Sanders Patel Myers Long Ross Foster Jimenez "
        "Tanaka Muller Rossi Dubois Novak Larsen Kowalski Silva Yamamoto Schmidt").split()
CITIES = [("Lyon", "France"), ("Paris", "France"), ("Marseille", "France"), ("Berlin", "Germany"),
          ("Munich", "Germany"), ("Hamburg", "Germany"), ("Madrid", "Spain"), ("Barcelona", "Spain"),
          ("Valencia", "Spain"), ("Rome", "Italy"), ("Milan", "Italy"), ("Naples", "Italy"),
          ("London", "United Kingdom"), ("Manchester", "United Kingdom"), ("Leeds", "United Kingdom"),
          ("Boston", "United States"), ("Chicago", "United States"), ("Denver", "United States"),
          ("Seattle", "United States"), ("Austin", "United States"), ("Toronto", "Canada"),
          ("Montreal", "Canada"), ("Vancouver", "Canada"), ("Tokyo", "Japan"), ("Osaka", "Japan"),
          ("Sydney", "Australia"), ("Melbourne", "Australia"), ("Lisbon", "Portugal"), ("Porto", "Portugal"),
          ("Amsterdam", "Netherlands"), ("Rotterdam", "Netherlands"), ("Warsaw", "Poland")]


def zipf_weights(n: int, s: float = 1.1) -> list[float]:
    return [1.0 / (k + 1) ** s for k in range(n)]


def rand_date(rng: random.Random, start: dt.date, end: dt.date) -> dt.date:
    return start + dt.timedelta(days=rng.randrange((end - start).days + 1))


def lognormal_money(rng: random.Random, mu: float, sigma: float, lo: float, hi: float) -> float:
    return round(min(hi, max(lo, math.exp(rng.gauss(mu, sigma)))), 2)


def person(rng: random.Random) -> tuple[str, str]:
    return rng.choice(FIRST), rng.choice(LAST)


def maybe(rng: random.Random, p_null: float, value: object) -> object:
    return None if rng.random() < p_null else value


def iso(d: dt.date | None) -> str | None:
    return d.isoformat() if d is not None else None


D0, D1 = dt.date(2021, 1, 1), dt.date(2024, 12, 31)


# ----- shop -------------------------------------------------------------------------------------
SHOP = (
    Table("suppliers", "supplier", "suppliers", (
        Col("supplier_id", "int", pk=True), Col("name", "text"),
        Col("country", "text", role="cat"), Col("rating", "int", role="num", label="supplier rating"),
    ), ("name",), "names"),
    Table("customers", "customer", "customers", (
        Col("customer_id", "int", pk=True), Col("first_name", "text"), Col("last_name", "text"),
        Col("email", "text", nullable=True, label="email address"), Col("city", "text", role="cat"),
        Col("country", "text", role="cat"), Col("segment", "text", role="cat", label="customer segment"),
        Col("signup_date", "date", role="date", label="sign-up date"),
    ), ("first_name", "last_name"), "first and last names"),
    Table("products", "product", "products", (
        Col("product_id", "int", pk=True), Col("name", "text"), Col("category", "text", role="cat"),
        Col("price", "money", role="num"), Col("stock", "int", role="num", label="units in stock"),
        Col("supplier_id", "int", ref="suppliers.supplier_id", label="supplier"),
    ), ("name",), "names"),
    Table("orders", "order", "orders", (
        Col("order_id", "int", pk=True), Col("customer_id", "int", ref="customers.customer_id", label="customer"),
        Col("order_date", "date", role="date", label="order date"), Col("status", "text", role="cat"),
        Col("shipped_date", "date", nullable=True, label="shipping date"),
    ), ("order_id",), "ids"),
    Table("order_items", "order item", "order items", (
        Col("order_item_id", "int", pk=True), Col("order_id", "int", ref="orders.order_id", label="order"),
        Col("product_id", "int", ref="products.product_id", label="product"),
        Col("quantity", "int", role="num"), Col("unit_price", "money", role="num", label="unit price"),
    ), ("order_item_id",), "ids"),
    Table("reviews", "review", "reviews", (
        Col("review_id", "int", pk=True), Col("product_id", "int", ref="products.product_id", label="product"),
        Col("customer_id", "int", ref="customers.customer_id", label="customer"),
        Col("rating", "int", role="num"), Col("review_date", "date", role="date", label="review date"),
        Col("comment", "text", nullable=True),
    ), ("review_id",), "ids"),
)

CATEGORIES = {
    "Electronics": ["Wireless Earbuds", "USB-C Charger", "Bluetooth Speaker", "Smart Watch", "Webcam", "Power Bank",
                    "Mechanical Keyboard", "Gaming Mouse", "Monitor Stand", "HDMI Cable"],
    "Kitchen": ["Chef Knife", "Cast Iron Pan", "Coffee Grinder", "French Press", "Cutting Board", "Blender",
                "Toaster", "Spice Rack", "Kettle", "Mixing Bowls"],
    "Books": ["Mystery Novel", "Cookbook", "Travel Guide", "Poetry Collection", "History Atlas", "Sci-Fi Saga",
              "Biography", "Language Course", "Art Book", "Children's Tale"],
    "Garden": ["Garden Hose", "Pruning Shears", "Seed Kit", "Watering Can", "Planter Box", "Compost Bin",
               "Lawn Rake", "Bird Feeder", "Solar Lamp", "Gloves"],
    "Sports": ["Yoga Mat", "Dumbbell Set", "Running Shoes", "Tennis Racket", "Football", "Bike Helmet",
               "Jump Rope", "Water Bottle", "Resistance Bands", "Backpack"],
    "Toys": ["Puzzle", "Building Blocks", "Plush Bear", "Board Game", "Kite", "Toy Train", "Doll House",
             "Card Game", "Yo-Yo", "Paint Set"],
}
ADJ = ["Classic", "Pro", "Eco", "Compact", "Deluxe", "Basic", "Ultra", "Mini", "Premium", "Travel"]
COMMENTS = ["Great value", "Arrived late", "Exactly as described", "Would buy again", "Poor quality",
            "Works fine", "Excellent", "Not as pictured", "Good gift", "Too expensive"]


def gen_shop(rng: random.Random) -> dict[str, list[tuple]]:
    countries = sorted({c for _, c in CITIES})
    suppliers = [(i + 1, f"{rng.choice(LAST)} {rng.choice(['Trading', 'Supply', 'Goods', 'Wholesale', 'Imports'])}",
                  rng.choice(countries), rng.choices([1, 2, 3, 4, 5], [1, 2, 5, 8, 4])[0]) for i in range(12)]
    city_w = zipf_weights(len(CITIES), 0.8)
    customers = []
    for i in range(rng.randint(180, 240)):
        fn, ln = person(rng)
        city, country = rng.choices(CITIES, city_w)[0]
        email = maybe(rng, 0.12, f"{fn.lower()}.{ln.lower()}{i + 1}@example.com")
        customers.append((i + 1, fn, ln, email, city, country,
                          rng.choices(["consumer", "corporate", "home office"], [6, 3, 1])[0],
                          iso(rand_date(rng, dt.date(2019, 1, 1), dt.date(2024, 6, 30)))))
    products = []
    names: set[str] = set()
    while len(products) < 90:
        cat = rng.choice(list(CATEGORIES))
        name = f"{rng.choice(ADJ)} {rng.choice(CATEGORIES[cat])}"
        if name in names:
            continue
        names.add(name)
        mu = {"Electronics": 3.7, "Kitchen": 3.3, "Books": 2.8, "Garden": 3.0, "Sports": 3.4, "Toys": 2.9}[cat]
        products.append((len(products) + 1, name, cat, lognormal_money(rng, mu, 0.6, 2.5, 900.0),
                         rng.choices([0, rng.randint(1, 20), rng.randint(20, 500)], [1, 3, 8])[0],
                         rng.randint(1, len(suppliers))))
    pop = zipf_weights(len(products), 1.0)
    rng.shuffle(pop)
    cust_w = [rng.expovariate(1.0) for _ in customers]
    orders, items, reviews = [], [], []
    for i in range(rng.randint(700, 900)):
        cust = rng.choices(customers, cust_w)[0]
        od = rand_date(rng, D0, D1)
        status = rng.choices(["delivered", "shipped", "pending", "cancelled", "returned"], [70, 10, 6, 8, 6])[0]
        shipped = None if status in ("pending", "cancelled") else iso(od + dt.timedelta(days=rng.randint(1, 7)))
        orders.append((i + 1, cust[0], iso(od), status, shipped))
        for _ in range(rng.choices([1, 2, 3, 4, 5], [40, 30, 15, 10, 5])[0]):
            p = rng.choices(products, pop)[0]
            price = p[3] if rng.random() < 0.8 else round(p[3] * rng.choice([0.8, 0.9, 0.95]), 2)
            items.append((len(items) + 1, i + 1, p[0], rng.choices([1, 2, 3, 4, 6], [60, 20, 10, 6, 4])[0], price))
            if status == "delivered" and rng.random() < 0.25:
                rating = rng.choices([1, 2, 3, 4, 5], [5, 6, 12, 30, 47])[0]
                reviews.append((len(reviews) + 1, p[0], cust[0], rating,
                                iso(od + dt.timedelta(days=rng.randint(5, 60))),
                                maybe(rng, 0.45, rng.choice(COMMENTS))))
    return {"suppliers": suppliers, "customers": customers, "products": products, "orders": orders,
            "order_items": items, "reviews": reviews}


# ----- university -------------------------------------------------------------------------------
UNIVERSITY = (
    Table("departments", "department", "departments", (
        Col("department_id", "int", pk=True), Col("name", "text"), Col("building", "text", role="cat"),
        Col("budget", "money", role="num"),
    ), ("name",), "names"),
    Table("instructors", "instructor", "instructors", (
        Col("instructor_id", "int", pk=True), Col("first_name", "text"), Col("last_name", "text"),
        Col("department_id", "int", ref="departments.department_id", label="department"),
        Col("title", "text", role="cat", label="academic title"), Col("salary", "money", role="num"),
        Col("hire_date", "date", role="date", label="hire date"),
    ), ("first_name", "last_name"), "first and last names"),
    Table("students", "student", "students", (
        Col("student_id", "int", pk=True), Col("first_name", "text"), Col("last_name", "text"),
        Col("major_id", "int", ref="departments.department_id", nullable=True, label="major department"),
        Col("enrollment_year", "int", role="num", label="enrollment year"),
        Col("gpa", "real", nullable=True, role="num", label="GPA"),
        Col("home_city", "text", role="cat", label="home city"),
    ), ("first_name", "last_name"), "first and last names"),
    Table("courses", "course", "courses", (
        Col("course_id", "int", pk=True), Col("code", "text", label="course code"), Col("title", "text"),
        Col("department_id", "int", ref="departments.department_id", label="department"),
        Col("credits", "int", role="num", label="credit value"), Col("level", "text", role="cat", label="course level"),
    ), ("title",), "titles"),
    Table("enrollments", "enrollment", "enrollments", (
        Col("enrollment_id", "int", pk=True), Col("student_id", "int", ref="students.student_id", label="student"),
        Col("course_id", "int", ref="courses.course_id", label="course"),
        Col("semester", "text", role="cat"), Col("grade", "text", nullable=True, role="cat"),
        Col("score", "real", nullable=True, role="num", label="exam score"),
    ), ("enrollment_id",), "ids"),
)

DEPTS = [("Computer Science", "CS", "Turing Hall"), ("Mathematics", "MATH", "Gauss Building"),
         ("Physics", "PHYS", "Curie Center"), ("Chemistry", "CHEM", "Curie Center"),
         ("Biology", "BIO", "Darwin Hall"), ("History", "HIST", "Library Wing"),
         ("Economics", "ECON", "Smith Hall"), ("Philosophy", "PHIL", "Library Wing"),
         ("Linguistics", "LING", "Smith Hall"), ("Music", "MUS", "Arts Pavilion")]
TOPICS = ["Introduction to", "Advanced", "Topics in", "Foundations of", "Seminar on", "Methods in"]
SUBJECTS = {"CS": ["Algorithms", "Databases", "Machine Learning", "Operating Systems", "Compilers", "Networks"],
            "MATH": ["Linear Algebra", "Calculus", "Topology", "Number Theory", "Probability", "Statistics"],
            "PHYS": ["Mechanics", "Optics", "Quantum Physics", "Thermodynamics", "Astrophysics", "Electromagnetism"],
            "CHEM": ["Organic Chemistry", "Biochemistry", "Spectroscopy", "Polymers", "Catalysis", "Electrochemistry"],
            "BIO": ["Genetics", "Ecology", "Microbiology", "Neuroscience", "Evolution", "Cell Biology"],
            "HIST": ["Ancient Rome", "Medieval Europe", "Modern Asia", "Revolutions", "Empires", "Trade Routes"],
            "ECON": ["Microeconomics", "Macroeconomics", "Game Theory", "Econometrics", "Finance", "Development"],
            "PHIL": ["Logic", "Ethics", "Epistemology", "Aesthetics", "Metaphysics", "Political Philosophy"],
            "LING": ["Phonology", "Syntax", "Semantics", "Sociolinguistics", "Morphology", "Pragmatics"],
            "MUS": ["Harmony", "Composition", "Music History", "Orchestration", "Jazz", "Ethnomusicology"]}
SEMESTERS = ["Fall 2022", "Spring 2023", "Fall 2023", "Spring 2024", "Fall 2024"]


def _grade(score: float) -> str:
    return "A" if score >= 90 else "B" if score >= 80 else "C" if score >= 70 else "D" if score >= 60 else "F"


def gen_university(rng: random.Random) -> dict[str, list[tuple]]:
    chosen = rng.sample(DEPTS, rng.randint(7, 10))
    departments = [(i + 1, n, b, round(rng.uniform(2, 12) * 100_000, 2)) for i, (n, _, b) in enumerate(chosen)]
    instructors = []
    for i in range(rng.randint(45, 60)):
        fn, ln = person(rng)
        title = rng.choices(["Lecturer", "Assistant Professor", "Associate Professor", "Professor"], [3, 4, 3, 2])[0]
        base = {"Lecturer": 52000, "Assistant Professor": 68000, "Associate Professor": 84000, "Professor": 105000}
        instructors.append((i + 1, fn, ln, rng.randint(1, len(departments)), title,
                            round(base[title] * rng.uniform(0.85, 1.25), 2),
                            iso(rand_date(rng, dt.date(1998, 1, 1), dt.date(2024, 8, 31)))))
    courses = []
    for d_idx, (_, abbr, _) in enumerate(chosen):
        for j, subj in enumerate(rng.sample(SUBJECTS[abbr], rng.randint(3, 6))):
            level = rng.choice(["undergraduate", "undergraduate", "graduate"])
            num = (100 if level == "undergraduate" else 500) + 10 * j + rng.randint(0, 9)
            courses.append((len(courses) + 1, f"{abbr}{num}", f"{rng.choice(TOPICS)} {subj}", d_idx + 1,
                            rng.choices([2, 3, 4, 6], [2, 6, 4, 1])[0], level))
    students, enrollments = [], []
    major_w = zipf_weights(len(departments), 0.7)
    for i in range(rng.randint(220, 280)):
        fn, ln = person(rng)
        year = rng.choices([2020, 2021, 2022, 2023, 2024], [2, 4, 5, 5, 5])[0]
        major = None if rng.random() < 0.1 else rng.choices(range(1, len(departments) + 1), major_w)[0]
        ability = rng.gauss(76, 9)
        sems = [s for s in SEMESTERS if int(s[-4:]) >= year]
        taken = rng.sample(courses, min(len(courses), rng.randint(2, 6)))
        scores = []
        for c in taken:
            sem = rng.choice(sems)
            if sem == "Fall 2024":
                enrollments.append((len(enrollments) + 1, i + 1, c[0], sem, None, None))
                continue
            score = round(min(100.0, max(20.0, rng.gauss(ability, 8))), 1)
            scores.append(score)
            enrollments.append((len(enrollments) + 1, i + 1, c[0], sem, _grade(score), score))
        gpa = round(min(4.0, max(0.0, (sum(scores) / len(scores) - 50) / 12.5)), 2) if scores else None
        students.append((i + 1, fn, ln, major, year, gpa, rng.choices(CITIES, zipf_weights(len(CITIES), 0.9))[0][0]))
    return {"departments": departments, "instructors": instructors, "students": students, "courses": courses,
            "enrollments": enrollments}


# ----- hospital ---------------------------------------------------------------------------------
HOSPITAL = (
    Table("wards", "ward", "wards", (
        Col("ward_id", "int", pk=True), Col("name", "text"), Col("floor", "int", role="num"),
        Col("capacity", "int", role="num", label="bed capacity"),
    ), ("name",), "names"),
    Table("doctors", "doctor", "doctors", (
        Col("doctor_id", "int", pk=True), Col("first_name", "text"), Col("last_name", "text"),
        Col("specialty", "text", role="cat"), Col("ward_id", "int", ref="wards.ward_id", label="ward"),
        Col("hire_date", "date", role="date", label="hire date"),
    ), ("first_name", "last_name"), "first and last names"),
    Table("patients", "patient", "patients", (
        Col("patient_id", "int", pk=True), Col("first_name", "text"), Col("last_name", "text"),
        Col("birth_date", "date", role="date", label="birth date"), Col("sex", "text", role="cat"),
        Col("blood_type", "text", nullable=True, role="cat", label="blood type"), Col("city", "text", role="cat"),
    ), ("first_name", "last_name"), "first and last names"),
    Table("admissions", "admission", "admissions", (
        Col("admission_id", "int", pk=True), Col("patient_id", "int", ref="patients.patient_id", label="patient"),
        Col("doctor_id", "int", ref="doctors.doctor_id", label="attending doctor"),
        Col("admit_date", "date", role="date", label="admission date"),
        Col("discharge_date", "date", nullable=True, label="discharge date"),
        Col("diagnosis", "text", role="cat"), Col("cost", "money", role="num", label="total cost"),
    ), ("admission_id",), "ids"),
    Table("prescriptions", "prescription", "prescriptions", (
        Col("prescription_id", "int", pk=True),
        Col("admission_id", "int", ref="admissions.admission_id", label="admission"),
        Col("medication", "text", role="cat"), Col("dose_mg", "int", role="num", label="dose in mg"),
        Col("days", "int", role="num", label="duration in days"),
    ), ("prescription_id",), "ids"),
)

WARDS = ["Cardiology", "Oncology", "Pediatrics", "Orthopedics", "Neurology", "Emergency", "Maternity", "Geriatrics"]
SPECIALTY = {"Cardiology": "cardiologist", "Oncology": "oncologist", "Pediatrics": "pediatrician",
             "Orthopedics": "orthopedic surgeon", "Neurology": "neurologist", "Emergency": "emergency physician",
             "Maternity": "obstetrician", "Geriatrics": "geriatrician"}
DIAGNOSES = {"Cardiology": ["arrhythmia", "heart failure", "angina"], "Oncology": ["lymphoma", "melanoma"],
             "Pediatrics": ["bronchiolitis", "asthma"], "Orthopedics": ["hip fracture", "torn ligament"],
             "Neurology": ["stroke", "migraine", "epilepsy"], "Emergency": ["concussion", "appendicitis", "burns"],
             "Maternity": ["childbirth"], "Geriatrics": ["pneumonia", "dehydration"]}
MEDS = [("ibuprofen", [200, 400, 600]), ("amoxicillin", [250, 500]), ("metoprolol", [25, 50, 100]),
        ("paracetamol", [500, 1000]), ("omeprazole", [20, 40]), ("atorvastatin", [10, 20, 40]),
        ("morphine", [5, 10]), ("levetiracetam", [500, 1000])]


def gen_hospital(rng: random.Random) -> dict[str, list[tuple]]:
    names = rng.sample(WARDS, rng.randint(6, 8))
    wards = [(i + 1, n, rng.randint(1, 6), rng.choice([12, 16, 20, 24, 30, 40])) for i, n in enumerate(names)]
    doctors = []
    for i in range(rng.randint(30, 42)):
        w = rng.choice(wards)
        fn, ln = person(rng)
        hired = rand_date(rng, dt.date(2000, 1, 1), dt.date(2024, 6, 1))
        doctors.append((i + 1, fn, ln, SPECIALTY[w[1]], w[0], iso(hired)))
    patients = []
    for i in range(rng.randint(260, 320)):
        fn, ln = person(rng)
        age = min(99, max(0, int(rng.gauss(52, 22))))
        bd = dt.date(2024 - age, 1, 1) + dt.timedelta(days=rng.randrange(365))
        blood = rng.choices(["O+", "A+", "B+", "AB+", "O-", "A-", "B-", "AB-"], [37, 34, 9, 4, 7, 6, 2, 1])[0]
        bt = maybe(rng, 0.2, blood)
        patients.append((i + 1, fn, ln, iso(bd), rng.choice(["F", "M"]), bt,
                         rng.choices(CITIES, zipf_weights(len(CITIES), 1.0))[0][0]))
    admissions, prescriptions = [], []
    for i in range(rng.randint(450, 550)):
        p = rng.choice(patients)
        d = rng.choice(doctors)
        ward = next(w for w in wards if w[0] == d[4])
        ad = rand_date(rng, dt.date(2022, 1, 1), D1)
        stay = max(1, int(rng.expovariate(1 / 5)))
        dd = ad + dt.timedelta(days=stay)
        discharge = None if dd > D1 or rng.random() < 0.04 else iso(dd)
        cost = lognormal_money(rng, math.log(2500 * (1 + stay / 4)), 0.35, 300, 250000)
        admissions.append((i + 1, p[0], d[0], iso(ad), discharge, rng.choice(DIAGNOSES[ward[1]]), cost))
        for _ in range(rng.choices([0, 1, 2, 3], [2, 4, 3, 1])[0]):
            med, doses = rng.choice(MEDS)
            dose = rng.choice(doses)
            prescriptions.append((len(prescriptions) + 1, i + 1, med, dose, rng.choice([3, 5, 7, 10, 14, 30])))
    return {"wards": wards, "doctors": doctors, "patients": patients, "admissions": admissions,
            "prescriptions": prescriptions}


# ----- flights (held out) ---------------------------------------------------------------------------
FLIGHTS = (
    Table("airports", "airport", "airports", (
        Col("airport_code", "text", pk=True, label="airport code"), Col("name", "text"),
        Col("city", "text", role="cat"), Col("country", "text", role="cat"),
    ), ("name",), "names"),
    Table("airlines", "airline", "airlines", (
        Col("airline_id", "int", pk=True), Col("name", "text"), Col("country", "text", role="cat"),
        Col("founded_year", "int", role="num", label="founding year"),
    ), ("name",), "names"),
    Table("aircraft", "aircraft", "aircraft", (
        Col("aircraft_id", "int", pk=True), Col("model", "text", role="cat"),
        Col("manufacturer", "text", role="cat"), Col("seats", "int", role="num", label="number of seats"),
        Col("airline_id", "int", ref="airlines.airline_id", label="operating airline"),
    ), ("aircraft_id",), "ids"),
    Table("flights", "flight", "flights", (
        Col("flight_id", "int", pk=True), Col("flight_number", "text", label="flight number"),
        Col("airline_id", "int", ref="airlines.airline_id", label="airline"),
        Col("origin", "text", ref="airports.airport_code", label="origin airport"),
        Col("destination", "text", ref="airports.airport_code", label="destination airport"),
        Col("departure_date", "date", role="date", label="departure date"),
        Col("distance_km", "int", role="num", label="distance in km"), Col("status", "text", role="cat"),
    ), ("flight_number",), "flight numbers"),
    Table("passengers", "passenger", "passengers", (
        Col("passenger_id", "int", pk=True), Col("first_name", "text"), Col("last_name", "text"),
        Col("nationality", "text", nullable=True, role="cat"),
        Col("birth_date", "date", role="date", label="birth date"),
    ), ("first_name", "last_name"), "first and last names"),
    Table("bookings", "booking", "bookings", (
        Col("booking_id", "int", pk=True), Col("flight_id", "int", ref="flights.flight_id", label="flight"),
        Col("passenger_id", "int", ref="passengers.passenger_id", label="passenger"),
        Col("seat_class", "text", role="cat", label="seat class"), Col("price", "money", role="num", label="fare"),
        Col("booked_date", "date", role="date", label="booking date"),
    ), ("booking_id",), "ids"),
)

AIRPORTS = [("CDG", "Charles de Gaulle", "Paris", "France"), ("ORY", "Orly", "Paris", "France"),
            ("LYS", "Saint-Exupery", "Lyon", "France"), ("FRA", "Frankfurt Main", "Frankfurt", "Germany"),
            ("MUC", "Franz Josef Strauss", "Munich", "Germany"), ("MAD", "Barajas", "Madrid", "Spain"),
            ("BCN", "El Prat", "Barcelona", "Spain"), ("FCO", "Fiumicino", "Rome", "Italy"),
            ("MXP", "Malpensa", "Milan", "Italy"), ("LHR", "Heathrow", "London", "United Kingdom"),
            ("LGW", "Gatwick", "London", "United Kingdom"), ("AMS", "Schiphol", "Amsterdam", "Netherlands"),
            ("JFK", "John F. Kennedy", "New York", "United States"), ("BOS", "Logan", "Boston", "United States"),
            ("ORD", "O'Hare", "Chicago", "United States"), ("SEA", "Sea-Tac", "Seattle", "United States"),
            ("YYZ", "Pearson", "Toronto", "Canada"), ("HND", "Haneda", "Tokyo", "Japan"),
            ("LIS", "Humberto Delgado", "Lisbon", "Portugal"), ("WAW", "Chopin", "Warsaw", "Poland")]
AIRLINES = [("Air Lumiere", "France", "AL"), ("Skyward", "United States", "SW"), ("Nordic Wings", "Netherlands", "NW"),
            ("Iberian Jet", "Spain", "IJ"), ("Alpine Air", "Germany", "AA"), ("Maple Airways", "Canada", "MA"),
            ("Sakura Air", "Japan", "SA"), ("Atlantic Express", "United Kingdom", "AE"),
            ("Tagus Air", "Portugal", "TA")]
MODELS = [("A320", "Airbus", 180), ("A321", "Airbus", 220), ("A350", "Airbus", 325), ("737-800", "Boeing", 189),
          ("787-9", "Boeing", 290), ("777-300", "Boeing", 396), ("E190", "Embraer", 100), ("CRJ900", "Bombardier", 90)]
COORDS = {"CDG": (49.0, 2.5), "ORY": (48.7, 2.4), "LYS": (45.7, 5.1), "FRA": (50.0, 8.6), "MUC": (48.4, 11.8),
          "MAD": (40.5, -3.6), "BCN": (41.3, 2.1), "FCO": (41.8, 12.2), "MXP": (45.6, 8.7), "LHR": (51.5, -0.5),
          "LGW": (51.2, -0.2), "AMS": (52.3, 4.8), "JFK": (40.6, -73.8), "BOS": (42.4, -71.0), "ORD": (42.0, -87.9),
          "SEA": (47.4, -122.3), "YYZ": (43.7, -79.6), "HND": (35.6, 139.8), "LIS": (38.8, -9.1), "WAW": (52.2, 21.0)}


def _distance(a: str, b: str) -> int:
    (la1, lo1), (la2, lo2) = COORDS[a], COORDS[b]
    p1, p2, dl = math.radians(la1), math.radians(la2), math.radians(lo2 - lo1)
    c = math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(dl)
    return int(round(6371 * math.acos(max(-1.0, min(1.0, c)))))


def gen_flights(rng: random.Random) -> dict[str, list[tuple]]:
    airports = [a for a in AIRPORTS if rng.random() < 0.85]
    chosen = rng.sample(AIRLINES, rng.randint(6, 9))
    airlines = [(i + 1, n, c, rng.randint(1925, 2015)) for i, (n, c, _) in enumerate(chosen)]
    aircraft = []
    for i in range(rng.randint(40, 60)):
        m = rng.choice(MODELS)
        aircraft.append((i + 1, m[0], m[1], m[2] + rng.choice([-12, -6, 0, 0, 0, 6]), rng.randint(1, len(airlines))))
    hub_w = zipf_weights(len(airports), 0.9)
    flights = []
    for i in range(rng.randint(350, 450)):
        al = rng.randint(1, len(airlines))
        o = rng.choices(airports, hub_w)[0]
        d = rng.choice([a for a in airports if a[0] != o[0]])
        status = rng.choices(["on time", "delayed", "cancelled", "diverted"], [70, 22, 6, 2])[0]
        flights.append((i + 1, f"{chosen[al - 1][2]}{rng.randint(100, 999)}", al, o[0], d[0],
                        iso(rand_date(rng, dt.date(2023, 1, 1), D1)), _distance(o[0], d[0]), status))
    passengers = []
    for i in range(rng.randint(300, 380)):
        fn, ln = person(rng)
        passengers.append((i + 1, fn, ln, maybe(rng, 0.1, rng.choice(CITIES)[1]),
                           iso(rand_date(rng, dt.date(1945, 1, 1), dt.date(2015, 12, 31)))))
    bookings = []
    for f in flights:
        dep = dt.date.fromisoformat(f[5])
        for _ in range(rng.choices([0, 1, 2, 3, 4, 5], [1, 3, 4, 3, 2, 1])[0]):
            cls = rng.choices(["economy", "premium economy", "business", "first"], [75, 12, 10, 3])[0]
            mult = {"economy": 1, "premium economy": 1.6, "business": 3.5, "first": 6}[cls]
            price = round((40 + f[6] * 0.09) * mult * rng.uniform(0.7, 1.5), 2)
            bookings.append((len(bookings) + 1, f[0], rng.randint(1, len(passengers)), cls, price,
                             iso(dep - dt.timedelta(days=rng.randint(1, 180)))))
    return {"airports": [a for a in airports], "airlines": airlines, "aircraft": aircraft, "flights": flights,
            "passengers": passengers, "bookings": bookings}


# ----- library (held out) ---------------------------------------------------------------------------
LIBRARY = (
    Table("branches", "branch", "branches", (
        Col("branch_id", "int", pk=True), Col("name", "text"), Col("city", "text", role="cat"),
        Col("opened_year", "int", role="num", label="opening year"),
    ), ("name",), "names"),
    Table("authors", "author", "authors", (
        Col("author_id", "int", pk=True), Col("name", "text"), Col("birth_year", "int", role="num", label="birth year"),
        Col("country", "text", nullable=True, role="cat"),
    ), ("name",), "names"),
    Table("books", "book", "books", (
        Col("book_id", "int", pk=True), Col("title", "text"),
        Col("author_id", "int", ref="authors.author_id", label="author"), Col("genre", "text", role="cat"),
        Col("published_year", "int", role="num", label="publication year"),
        Col("pages", "int", role="num", label="page count"),
        Col("branch_id", "int", ref="branches.branch_id", label="home branch"),
    ), ("title",), "titles"),
    Table("members", "member", "members", (
        Col("member_id", "int", pk=True), Col("first_name", "text"), Col("last_name", "text"),
        Col("membership", "text", role="cat", label="membership type"), Col("city", "text", role="cat"),
        Col("join_date", "date", role="date", label="join date"),
    ), ("first_name", "last_name"), "first and last names"),
    Table("loans", "loan", "loans", (
        Col("loan_id", "int", pk=True), Col("book_id", "int", ref="books.book_id", label="book"),
        Col("member_id", "int", ref="members.member_id", label="member"),
        Col("loan_date", "date", role="date", label="loan date"),
        Col("return_date", "date", nullable=True, label="return date"),
        Col("late_fee", "money", role="num", label="late fee"),
    ), ("loan_id",), "ids"),
)

GENRES = ["fiction", "mystery", "science fiction", "fantasy", "biography", "history", "poetry", "science", "travel"]
WORDS = ["Silent", "River", "Glass", "Winter", "Garden", "Shadow", "Empire", "Last", "Hidden", "Golden", "Night",
         "Stone", "Light", "Ocean", "Forest", "Letters", "Journey", "Kingdom", "Memory", "Storm", "City", "Fire"]


def gen_library(rng: random.Random) -> dict[str, list[tuple]]:
    cities = rng.sample([c for c, _ in CITIES], 5)
    branches = [(i + 1, f"{c} {rng.choice(['Central', 'North', 'Riverside', 'Old Town'])} Library", c,
                 rng.randint(1890, 2015)) for i, c in enumerate(cities)]
    authors = []
    for i in range(rng.randint(60, 80)):
        fn, ln = person(rng)
        authors.append((i + 1, f"{fn} {ln}", rng.randint(1900, 1995), maybe(rng, 0.15, rng.choice(CITIES)[1])))
    books, titles = [], set()
    auth_w = zipf_weights(len(authors), 0.9)
    n_books = rng.randint(220, 260)
    while len(books) < n_books:
        if rng.random() < 0.5:
            t = f"The {rng.choice(WORDS)} {rng.choice(WORDS)}"
        else:
            t = f"{rng.choice(WORDS)} of {rng.choice(WORDS)}"
        if t in titles:
            continue
        titles.add(t)
        g = rng.choice(GENRES)
        books.append((len(books) + 1, t, rng.choices(authors, auth_w)[0][0], g, rng.randint(1950, 2024),
                      max(60, int(rng.gauss(320 if g != "poetry" else 120, 90))), rng.randint(1, len(branches))))
    members = []
    for i in range(rng.randint(200, 260)):
        fn, ln = person(rng)
        members.append((i + 1, fn, ln, rng.choices(["standard", "student", "senior", "family"], [6, 3, 2, 2])[0],
                        rng.choice(cities), iso(rand_date(rng, dt.date(2015, 1, 1), dt.date(2024, 6, 30)))))
    loans = []
    book_w = zipf_weights(len(books), 0.8)
    rng.shuffle(book_w)
    for i in range(rng.randint(700, 900)):
        b = rng.choices(books, book_w)[0]
        m = rng.choice(members)
        ld = rand_date(rng, dt.date(2022, 1, 1), D1)
        days = int(rng.expovariate(1 / 16)) + 1
        ret = ld + dt.timedelta(days=days)
        returned = None if ret > D1 or rng.random() < 0.05 else iso(ret)
        fee = round(max(0, days - 21) * 0.25, 2) if returned else 0.0
        loans.append((i + 1, b[0], m[0], iso(ld), returned, fee))
    return {"branches": branches, "authors": authors, "books": books, "members": members, "loans": loans}


DOMAINS: dict[str, Domain] = {d.name: d for d in (
    Domain("shop", "an online shop: customers, orders, products, suppliers and reviews", SHOP, gen_shop),
    Domain("university", "a university: departments, instructors, students, courses and enrollments",
           UNIVERSITY, gen_university),
    Domain("hospital", "a hospital: wards, doctors, patients, admissions and prescriptions", HOSPITAL, gen_hospital),
    Domain("flights", "a flight network: airports, airlines, aircraft, flights, passengers and bookings",
           FLIGHTS, gen_flights),
    Domain("library", "a public library: branches, authors, books, members and loans", LIBRARY, gen_library),
)}

TRAIN_DOMAINS = ("shop", "university", "hospital")
HELD_OUT_DOMAINS = ("flights", "library")
