import os
from socket import *

serverSocket = socket(AF_INET, SOCK_STREAM)
serverSocket.bind(('localhost', 8080))
serverSocket.listen(5)
if os.fork() == 0:                  # the worker serves; the parent only waits for it
    while True:
        connectionSocket, clientAddr = serverSocket.accept()
        connectionSocket.recv(1024)
        connectionSocket.send("thank you !".encode())
        connectionSocket.close()
os.wait()
