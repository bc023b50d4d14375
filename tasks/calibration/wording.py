"""The hand-written wording of the calibration set: topics with real answers, and facts.

Written for this project (no dataset copied). Each answer is plain prose, so a test of an
instruction (lowercase, no commas, bullets, ...) can be applied to it mechanically.
"""

from __future__ import annotations

# (question, four points): a real answer is the points as a paragraph; every one holds a comma.
TOPICS = (
    ("Why do leaves change color in autumn?", (
        "Leaves hold green chlorophyll, which captures sunlight for the tree.",
        "As days shorten the tree stops making new chlorophyll.",
        "The green fades, so yellow and orange pigments that were there all along show through.",
        "Some trees also make red pigments from sugars trapped in the leaf.",
    )),
    ("How can I keep bread fresh for longer?", (
        "Store it at room temperature in a paper or cloth bag, not in the fridge.",
        "Keep the cut side face down on the board to slow drying.",
        "Freeze any slices you will not eat within two days.",
        "Toast frozen slices straight from the freezer with no need to thaw them.",
    )),
    ("What are good habits for a first job interview?", (
        "Research the company, its products and its recent news.",
        "Prepare two or three short stories that show your skills.",
        "Arrive ten minutes early and dress a little more formally than the staff.",
        "End by asking a thoughtful question about the role.",
    )),
    ("Why is the sky blue?", (
        "Sunlight contains all colors, mixed together as white light.",
        "Air molecules scatter short blue wavelengths far more than long red ones.",
        "That scattered blue light reaches our eyes from every part of the sky.",
        "At sunset the light crosses more air, so the blue is scattered away and reds remain.",
    )),
    ("How do I start running as a beginner?", (
        "Begin with short runs, mixing one minute of jogging with two minutes of walking.",
        "Run three times a week with a rest day between runs.",
        "Add a few minutes each week rather than pushing hard at once.",
        "Wear comfortable shoes and stop if you feel sharp pain.",
    )),
    ("What does a compost heap need to work well?", (
        "It needs green waste such as vegetable scraps and brown waste such as dry leaves.",
        "Keep it about as damp as a wrung-out sponge.",
        "Turn it every week or two to let air in.",
        "Leave out meat, dairy and oily food, which attract pests.",
    )),
    ("How does a refrigerator keep food cold?", (
        "A refrigerant flows through coils inside the fridge.",
        "As it evaporates, it absorbs heat from the air inside.",
        "A compressor pumps the warm gas to coils at the back where it releases the heat.",
        "The cycle repeats, so the inside stays cold while the room gets slightly warmer.",
    )),
    ("What should I pack for a day hike?", (
        "Bring plenty of water, at least two litres on a warm day.",
        "Pack snacks, a map and a charged phone.",
        "Add a light rain jacket even if the forecast is clear.",
        "Carry a small first aid kit and some sunscreen.",
    )),
    ("Why do we have leap years?", (
        "Earth takes about 365 and a quarter days to orbit the Sun.",
        "A calendar of 365 days would drift by about a day every four years.",
        "Adding February 29 every fourth year keeps the seasons in place.",
        "Century years skip the leap day unless they divide by 400, which fixes the small error left.",
    )),
    ("How can I save money on groceries?", (
        "Plan meals for the week and shop with a list.",
        "Compare unit prices, not just the price on the label.",
        "Buy staples such as rice, beans and oats in bulk.",
        "Cook larger batches and freeze portions for busy days.",
    )),
)

# (question, correct statement, subtly wrong statement): the two read alike, only the fact differs.
FACTS = (
    ("How many legs does a spider have?",
     "A spider has eight legs.", "A spider has six legs."),
    ("At what temperature does water boil at sea level?",
     "At sea level water boils at 100 degrees Celsius.", "At sea level water boils at 90 degrees Celsius."),
    ("Which planet is closest to the Sun?",
     "Mercury is the planet closest to the Sun.", "Venus is the planet closest to the Sun."),
    ("What gas do plants take in for photosynthesis?",
     "Plants take in carbon dioxide and give off oxygen.", "Plants take in oxygen and give off carbon dioxide."),
    ("How many sides does a hexagon have?",
     "A hexagon has six sides.", "A hexagon has eight sides."),
    ("What is the largest ocean on Earth?",
     "The Pacific is the largest ocean on Earth.", "The Atlantic is the largest ocean on Earth."),
    ("Who wrote the play Romeo and Juliet?",
     "Romeo and Juliet was written by William Shakespeare.", "Romeo and Juliet was written by Christopher Marlowe."),
    ("What is the chemical symbol for gold?",
     "The chemical symbol for gold is Au.", "The chemical symbol for gold is Ag."),
    ("How many minutes are in three hours?",
     "Three hours have 180 minutes.", "Three hours have 160 minutes."),
    ("What is the freezing point of water in degrees Fahrenheit?",
     "Water freezes at 32 degrees Fahrenheit.", "Water freezes at 0 degrees Fahrenheit."),
    ("Which organ pumps blood around the human body?",
     "The heart pumps blood around the body.", "The liver pumps blood around the body."),
    ("What is the capital of Australia?",
     "The capital of Australia is Canberra.", "The capital of Australia is Sydney."),
    ("How many bones does an adult human have?",
     "An adult human has 206 bones.", "An adult human has 212 bones."),
    ("Which is the longest bone in the human body?",
     "The femur in the thigh is the longest bone.", "The humerus in the upper arm is the longest bone."),
    ("What is the hardest natural material?",
     "Diamond is the hardest natural material.", "Quartz is the hardest natural material."),
    ("How many days are in a leap year?",
     "A leap year has 366 days.", "A leap year has 365 days."),
    ("What is the square root of 81?",
     "The square root of 81 is 9.", "The square root of 81 is 8."),
    ("What is the main language of Brazil?",
     "Most people in Brazil speak Portuguese.", "Most people in Brazil speak Spanish."),
    ("What color do you get by mixing blue and yellow paint?",
     "Mixing blue and yellow paint gives green.", "Mixing blue and yellow paint gives purple."),
    ("How long does sunlight take to reach Earth?",
     "Sunlight takes about eight minutes to reach Earth.", "Sunlight takes about eight seconds to reach Earth."),
    ("Which metal is liquid at room temperature?",
     "Mercury is a metal that is liquid at room temperature.", "Tin is a metal that is liquid at room temperature."),
)
