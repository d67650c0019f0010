import Interpreter
print("qsh")
