from socket import *

serverPort = 8080
serverSocket = socket(AF_INET, SOCK_STREAM)
serverSocket.bind(('', serverPort))
serverSocket.listen(1)
print('The server is ready to receive')
while True:
    connectionSocket = serverSocket.accept()
    sentence = connectionSocket.recvfrom(2048).decode()
    connectionSocket.send("thank you !".encode())
    connectionSocket.close()
