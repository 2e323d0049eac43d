from socket import *

serverSocket = socket(AF_INET, SOCK_DGRAM)
serverSocket.bind(('127.0.0.1', 8081))
while True:
    message, clientAddress = serverSocket.recvfrom(1024)
    print(message.decode())           # never answers
