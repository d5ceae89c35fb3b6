"""What serves the lessons: the work folder and its atomic files, the feature store, the dataset layouts, the stages,
the command line, the demo, the notebooks' set-up, the fixture and the figures. The lessons' modules (one level up)
import nothing from here."""
