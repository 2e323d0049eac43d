from socket import *

serverSocket = socket(AF_INET, SOCK_STREAM)
serverSocket.bind(('localhost', 8080))
serverSocket.listen(5)
while True:
    connectionSocket, clientAddr = serverSocket.accept()
    first = connectionSocket.recv(1)             # reads one byte of the request, not all of it
    connectionSocket.send("thank you !".encode())
    connectionSocket.close()
