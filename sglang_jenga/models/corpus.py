"""The English text the zoo's tokenizers are trained on (written for this project, no external source).

About 11 KB of plain prose, dialogue, numbers and a little code, so that byte-level BPE learns common English
words and punctuation. Any text still encodes (byte fallback); this corpus only decides which merges exist.
Changing a single character changes every tokenizer the zoo writes.
"""

CORPUS = """\
The morning train left the station at seven o'clock, and the city was still quiet. A few people stood on the
platform with paper cups of coffee, reading the news on their phones. The conductor walked past each car and
counted the passengers. Nobody was in a hurry yet; the day had not started for most of them.

When the sun rose above the hills, the light moved slowly across the river. Boats were tied to the wooden
docks, and the water was calm. A small dog ran along the bank, chasing birds that flew away long before it
came near. Its owner called its name twice, then laughed and kept walking.

Memory is a limited resource. Every program that runs on a computer asks for some of it, and the operating
system decides who gets what. When memory runs out, something has to give: a cache is cleared, a request is
delayed, or a process is stopped. Good systems plan for this moment instead of hoping it will never come.

A language model reads text as a sequence of tokens. Each token is a short piece of a word, a whole word, or
a single character. The model looks at the tokens it has seen so far and predicts the next one. To avoid
doing the same work twice, the server keeps the keys and values of earlier tokens in a cache. That cache
grows with every new token, and on a busy server it is the largest thing in memory.

Some layers only need to remember a small window of recent tokens. Other layers need to see the whole
history. A few layers do not keep keys and values at all; they carry a fixed-size state forward, one step at
a time, like a running summary. If all of these layers share one pool of pages, the pool must be shaped so
that no page is wasted and no layer is starved.

"Could you pass the salt, please?" asked Maria.
"Of course," said her brother. "Do you want the pepper too?"
"No, thank you. The soup is already spicy enough."
They ate in silence for a while, listening to the rain on the roof.

The recipe is simple. Cut two onions and three carrots into small pieces. Heat a spoon of oil in a large pot,
add the vegetables, and cook them for ten minutes over medium heat. Pour in one liter of water, add a cup of
lentils, a pinch of salt and a bay leaf. Let the soup simmer for forty minutes, stirring now and then. Serve
it hot with fresh bread and a slice of lemon.

In the spring the garden changes every week. First the snowdrops appear, then the yellow daffodils, and later
the tulips in red, orange and white. The apple tree blooms in May. Bees visit each flower, and by the end of
summer the branches are heavy with fruit. Children climb the tree to pick the highest apples, and their
parents tell them to be careful.

The library opens at nine and closes at six. On the ground floor there are newspapers, magazines and a quiet
room for study. The second floor holds books on history, science, art and music. Students come in the
afternoon after their classes; older readers prefer the morning, when the rooms are calm and the light is
good. The librarian knows most of them by name.

Numbers appear everywhere in daily life: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 16, 20, 24, 32, 48, 64, 100,
128, 256, 512, 1000, 1024, 2048, 4096 and 8192. A year has 365 days, a day has 24 hours, an hour has 60
minutes. The meeting is on 2024-03-15 at 14:30. The price went from $19.99 to $24.50, an increase of 22.6%.
Page 7 of 12. Room 404. Version 0.5.23. Call 555-0100 between 9am and 5pm.

Here is a short function in Python that counts the words in a text:

def count_words(text):
    counts = {}
    for word in text.lower().split():
        word = word.strip(".,;:!?\\"'()")
        if word:
            counts[word] = counts.get(word, 0) + 1
    return counts

if __name__ == "__main__":
    print(count_words("the cat and the dog and the bird"))

And here is the same idea as a shell command: cat notes.txt | tr ' ' '\\n' | sort | uniq -c | sort -rn | head.

The weather report for tomorrow says that the morning will be cloudy with a light wind from the west. In the
afternoon the clouds will break and the temperature will rise to about eighteen degrees. There is a small
chance of rain in the evening, so take an umbrella if you plan to stay out late. The weekend should be warm
and dry.

A good teacher does not simply give answers. She asks questions that lead the students to find the answers
themselves. When a student makes a mistake, she shows where the reasoning went wrong and lets him try again.
Over time the students learn to check their own work, and that is the most useful lesson of all.

The old house at the end of the street had been empty for years. Its windows were dusty, the paint on the
door was peeling, and the garden was full of weeds. Then one summer a young couple bought it. They repaired
the roof, painted the walls white and planted roses by the gate. By autumn the neighbors could hardly
remember how the house had looked before.

To build a bridge, engineers first study the ground on both sides of the river. They measure the distance,
the depth of the water and the strength of the soil. Then they choose a design: a simple beam, an arch, or a
suspension bridge held by cables. Each design has its own limits of length and load. The work can take
years, and many people depend on it being done right.

Questions and answers:
Q: What is the capital of France?
A: The capital of France is Paris.
Q: How many legs does a spider have?
A: A spider has eight legs.
Q: Why is the sky blue?
A: Sunlight is scattered by the air, and blue light is scattered more than red light.
Q: What is two plus two?
A: Two plus two is four.

The market was busy on Saturday. Farmers sold potatoes, cabbages, cheese, eggs and honey. A baker offered
warm rolls and sweet cakes. Near the fountain a man played the guitar, and a few children danced in front of
him. People walked slowly between the stalls, comparing prices and talking with friends they had not seen
all week.

When you write a test, start with the simplest case. Check that an empty input gives an empty output. Then
add one element, then two, then many. Check the edges: the first item, the last item, a full buffer, an
empty pool. A test that fails should tell you exactly what went wrong, with the expected value and the
actual value side by side.

The ship sailed north for three days. On the fourth morning the sailors saw ice floating on the sea, white
and blue under a grey sky. The captain ordered the crew to slow down and keep watch. At night the stars
were very bright, and the cold wind made everyone wear their thickest coats. Nobody complained; they had
known the journey would be hard.

Every city has its own sounds. In the morning you hear buses, bicycles and the doors of shops opening. At
noon there is the noise of lunch: plates, voices and music from a radio. In the evening the streets become
quieter, and you can hear footsteps, a distant train and sometimes an owl in the park.

Please summarize the following paragraph in one sentence. The committee met on Tuesday to discuss the new
budget. After a long debate, the members agreed to spend more on schools and roads, and less on offices.
The final vote was seven to two. The plan will start next January.
Summary: The committee voted seven to two for a budget that moves money from offices to schools and roads.

Translate to French: Good morning, how are you today? -> Bonjour, comment allez-vous aujourd'hui ?
Translate to German: The book is on the table. -> Das Buch liegt auf dem Tisch.
Translate to Spanish: I would like a glass of water. -> Me gustaria un vaso de agua.

The scheduler looks at the queue of waiting requests and decides which ones can start now. It adds up the
pages each request will need and compares the total with the free pages in the pool. If there is not
enough room, it can evict old cached prefixes that nobody is using, or it can wait until a running request
finishes and returns its pages. A careful scheduler never promises more memory than it has.

Long ago, in a village between two mountains, there lived a clockmaker. His clocks were known in every town
of the valley, because they were never late and never early. One winter a traveler asked him for his
secret. The old man smiled and said: "I listen to them. Every clock tells you when something is wrong, if
you are patient enough to hear it."

Thank you for your message. I will be out of the office until Monday, the 3rd of June, with limited access
to email. For urgent matters, please contact my colleague at the front desk. Best regards, and have a nice
week.

The museum was free on the first Sunday of each month, so the halls were crowded. Families stopped in front
of the dinosaur skeleton, which stood almost to the ceiling. In the next room were paintings of ships,
harbors and stormy seas. A guide explained how the painters mixed their colors by hand, grinding minerals
into powder and blending them with oil. Visitors leaned closer to see the brush strokes.

My grandmother kept a notebook of everything she planted: the date, the weather, the variety of seed and
how many plants came up. She wrote in small, careful letters with a pencil. Looking through it now, I can
follow forty years of her garden, season by season, through dry summers, late frosts and good harvests.

Exercise helps both the body and the mind. A brisk walk of thirty minutes a day strengthens the heart,
improves sleep and lifts the mood. Swimming, cycling and dancing are good choices too. The important thing
is to find an activity you enjoy, because then you will keep doing it, week after week, year after year.

The astronomer pointed the telescope toward the planet and adjusted the focus. Slowly its rings came into
view, thin and bright against the dark background. She recorded the time, the position and the quality of
the air. Later she would compare tonight's observations with photographs taken by satellites, looking for
changes that might explain the strange shadows seen last month.

Learning a new language takes patience. At first every sentence is a puzzle: which word comes first, which
ending fits, how to pronounce the sounds that do not exist in your own language. Then, one day, you notice
that you understood a whole conversation without translating it in your head. That moment makes all the
practice worthwhile.

The factory produced bicycles, about two hundred each day. Frames were welded in one hall, painted in
another, and assembled on a long line where workers attached wheels, brakes, chains and seats. Before a
bicycle left the building, an inspector rode it around the yard, checked the gears and signed a small card
that went into the box with it.

Dear customer, your order number 58213 has been shipped. It contains three items: a blue cotton shirt, a
pair of running shoes and a leather belt. The package should arrive within five working days. You can track
its progress on our website. If anything is missing or damaged, reply to this email and we will help you.

Friendship grows from small things: a phone call when you are sick, a message on your birthday, an
invitation to dinner after a difficult week. Friends do not need to agree on everything. They need to
listen, to forgive, and to show up when it matters.

The end.
"""
