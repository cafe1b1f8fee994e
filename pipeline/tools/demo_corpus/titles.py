"""Titles, descriptions and channels of the demo catalog, per video kind.

They are written to exercise the keyword search filter the way the internet does: honest gameplay titles
("CoinRun speedrun"), low-quality uploads whose titles still pass ("Celeste any% speedrun" over a face-cam
stream), non-platformer footage mis-titled with a platformer name, and rows that the filter must drop (no
game name, no action word, a negating word such as "movie"). Passing text avoids the excluded words even as
substrings ("most" contains "ost"), so the rows pass under whole-word or substring matching alike.
"""

from __future__ import annotations

GAME_DISPLAY = {"coinrun": "CoinRun", "jumper": "Jumper", "ninja": "Ninja", "climber": "Climber",
                "starpilot": "StarPilot", "bigfish": "BigFish", "fruitbot": "FruitBot", "chaser": "Chaser"}

CHANNELS = ("PixelRunner", "Retro Speed TV", "LevelUpLarry", "Ninjutsu Nell", "CoinCollector",
            "The Platform Lab", "Jump & Run Archive", "SaveStateSam")

# {game} is the display name of the rendered Procgen game, {n} a small number, {level} the Procgen level.
CLEAN = (
    ("{game} speedrun - level {level} in record time", "Hard mode, no deaths. Sticky-fingers edition."),
    ("{game} full playthrough #{n}", "Every level of the run, start to finish."),
    ("{game} walkthrough part {n} (no commentary)", "Part {n} of my walkthrough series."),
    ("{game} gameplay - hard mode, level {level}", "Just playing some levels."),
    ("{GAME} ANY% WORLD RECORD ATTEMPT!!!", "Trying to beat the top time on level {level}."),
    ("{game} level {level}", "Full playthrough of level {level}, no commentary."),  # action word only here
)
FACECAM = (
    ("Celeste any% speedrun attempts (live with cam)", "Stream VOD. Grinding resets all night."),
    ("Hollow Knight playthrough part {n} [facecam]", "Blind playthrough with the camera on."),
    ("Cuphead let's play #{n} - chill stream", "Come hang out, chat is open."),
)
STATIC_MENU = (
    ("Mega Man X longplay", "Longplay of the SNES classic."),
    ("Castlevania walkthrough part {n}", "Getting ready to start the run."),
    ("Kirby gameplay (stream starting soon)", "Stream starts in a few minutes."),
)
SLIDESHOW = (
    ("Super Meat Boy walkthrough screenshots", "A photo guide to every world."),
    ("Spelunky 100% playthrough - photo guide", "All secrets, one picture at a time."),
    ("Shovel Knight walkthrough in pictures", "Screenshot guide for all stages."),
)
BLACK_FADE = (
    ("Rayman let's play episode {n}", "Sorry, capture card acting up this week."),
    ("Donkey Kong Country gameplay (capture issues)", "Recorded off my old console."),
    ("Metroid playthrough - part {n}", "Part {n}. The signal drops out sometimes."),
)
TEXT_OVERLAY = (
    ("Sonic speedrun with live chat", "Twitch chat replay burned in."),
    ("Shovel Knight gameplay | twitch chat replay", "Chat was wild tonight."),
    ("Celeste playthrough with subtitles and chat", "Full chat replay on screen."),
)
LETTERBOX = (
    ("Kirby gameplay (old recording)", "Found this on an old hard drive."),
    ("Super Mario walkthrough 2007 upload", "Recorded with a webcam pointed at the TV."),
    ("Mega Man speedrun - archive", "Archived from an old site, low resolution."),
)
NON_PLATFORMER = (  # footage of other Procgen games, mis-titled with a platformer's name
    ("Super Mario world record speedrun", "{game} on hard, new personal best."),
    ("Sonic-style {game} gameplay", "Not quite a platformer but fast."),
    ("Donkey Kong Country playthrough part {n}", "Bonus stage footage."),
)
INTRO_MENU = (
    ("{game} playthrough from the title screen", "Starts at the menu, then straight into the run."),
    ("{game} speedrun (full menu to finish)", "Timer starts on pressing start."),
)
SMALL_FACECAM = (
    ("{game} gameplay with cam", "Small cam in the corner."),
    ("{game} let's play #{n} [cam]", "Chill run with the camera on."),
)
FADE_CUTS = (
    ("{game} walkthrough (signal drops)", "My capture card keeps cutting out, sorry."),
    ("{game} gameplay - unstable recording", "Some black parts where the recorder stalled."),
)

TITLES = {"clean": CLEAN, "facecam": FACECAM, "static_menu": STATIC_MENU, "slideshow": SLIDESHOW,
          "black_fade": BLACK_FADE, "text_overlay": TEXT_OVERLAY, "letterbox": LETTERBOX,
          "non_platformer": NON_PLATFORMER, "intro_menu": INTRO_MENU, "small_facecam": SMALL_FACECAM,
          "fade_cuts": FADE_CUTS}

# Rows that the search filter must drop, with the reason it should give.
NO_GAME_KEYWORD = ("Evening vlog: cooking pasta", "Daily gameplay of life, lol. Recipe below.")
NO_ACTION_WORD = ("Celeste fan art timelapse", "Drawing Madeline and Badeline, three hours of painting.")
EXCLUDED_WORD = ("CoinRun: The Movie (full gameplay)", "All the cutscenes and gameplay in one video.")
TOO_LONG = ("Celeste 10 hour speedrun marathon VOD", "The whole charity marathon, every run.")
TOO_SHORT_DECLARED = ("Jumper speedrun in 9 seconds", "Shortest run of level {level}.")
TOO_SHORT_UNDECLARED = ("Ninja speedrun: fastest clear", "Quick clear of level {level}.")
DUPLICATE_REUPLOAD = ("{game} speedrun (reupload)", "Reuploaded from my old channel.")

# Hostile-looking ids and Unicode titles (ids are kept verbatim in the catalog; files use safe keys).
UNICODE_TITLES = (
    ("ep.1 final", "CoinRun ★ partie complète — gameplay sans commentaire 🎮", "Épisode 1 : la fin ! ¡Olé!"),
    ("../../etc/passwd", "ジャンパー Jumper 実況 gameplay ☆ part 2", "初見プレイ。よろしく！"),
)
TRUNCATED = ("broken upload", "Ninja speedrun (upload interrupted)", "The upload failed halfway.")
MISSING = ("gone-404", "Climber playthrough (deleted video)", "This file no longer exists.")
